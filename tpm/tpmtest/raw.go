package tpmtest

import (
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Raw is the floor every TPM-backed signature with a wrapped key pays: a
// loaded parent, and per signature Load + Sign + FlushContext with
// password authorization. Benchmarks compare against it.
type Raw struct {
	t      transport.TPM
	Parent tpm2.NamedHandle
	pub    tpm2.TPM2BPublic
	priv   tpm2.TPM2BPrivate
}

// SigningTemplate is a P-256 ECDSA signing key like a credential key.
var SigningTemplate = tpm2.TPMTPublic{
	Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, NoDA: true, SignEncrypt: true},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
		CurveID: tpm2.TPMECCNistP256,
	}),
}

// CreatePrimary makes a TCG ECC SRK on t.
func CreatePrimary(tb testing.TB, t transport.TPM) tpm2.NamedHandle {
	tb.Helper()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		tb.Fatal(err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
}

// NewRaw creates a primary and a signing key under it on t.
func NewRaw(tb testing.TB, t transport.TPM) *Raw {
	tb.Helper()
	r := &Raw{t: t, Parent: CreatePrimary(tb, t)}
	c, err := tpm2.Create{ParentHandle: r.parentAuth(), InPublic: tpm2.New2B(SigningTemplate)}.Execute(t)
	if err != nil {
		tb.Fatal(err)
	}
	r.pub, r.priv = c.OutPublic, c.OutPrivate
	tb.Cleanup(func() { tpm2.FlushContext{FlushHandle: r.Parent.Handle}.Execute(t) })
	return r
}

func (r *Raw) parentAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: r.Parent.Handle, Name: r.Parent.Name, Auth: tpm2.PasswordAuth(nil)}
}

// LoadSignFlush signs one digest with the key under parent.
func (r *Raw) LoadSignFlush(parent tpm2.NamedHandle) error {
	l, err := tpm2.Load{ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)}, InPublic: r.pub, InPrivate: r.priv}.Execute(r.t)
	if err != nil {
		return err
	}
	defer tpm2.FlushContext{FlushHandle: l.ObjectHandle}.Execute(r.t)
	d := sha256.Sum256([]byte("challenge"))
	_, err = tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: l.ObjectHandle, Name: l.Name, Auth: tpm2.PasswordAuth(nil)},
		Digest:     tpm2.TPM2BDigest{Buffer: d[:]},
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(r.t)
	return err
}
