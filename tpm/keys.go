package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// Credential ID layout, version 1 (all integers big-endian):
//
//	0      1 byte   version (1)
//	1      2 bytes  size of the TPMT_PUBLIC that follows
//	3      n bytes  TPMT_PUBLIC of the credential key
//	3+n    2 bytes  size of the TPM2B_PRIVATE contents that follow
//	5+n    m bytes  the private blob, encrypted and integrity-protected by
//	                the storage primary
//
// With a P-256 key that is 251 bytes, within the 255 a U2F key handle may
// have. The relying party binding is the key's authPolicy (see binding):
// the public area is covered by the private blob's integrity HMAC, so
// nobody can move a key to another relying party without the TPM refusing
// to load it, and we can compare it before we ask the TPM anything.
const credentialVersion = 1

// MaxCredentialIDLength bounds what we accept before parsing.
const MaxCredentialIDLength = 255

// Binding returns the authPolicy that ties a credential key to one relying
// party (rpIdHash for CTAP2, the appID hash for U2F). It is never satisfied
// as a policy: the key is used through its (empty) authValue; the field only
// carries the binding inside the TPM-protected public area.
func Binding(rp [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("tpm-u2f credential binding v1\x00"))
	h.Write(rp[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

var credentialAttributes = tpm2.TPMAObject{
	FixedTPM:            true,
	FixedParent:         true,
	SensitiveDataOrigin: true,
	UserWithAuth:        true,
	NoDA:                true, // a failed HMAC is a session fault, never a lockout step
	SignEncrypt:         true,
}

func credentialTemplate(rp [32]byte) tpm2.TPMTPublic {
	b := Binding(rp)
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: credentialAttributes,
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: b[:]},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		}),
	}
}

// credential is a parsed credential ID.
type credential struct {
	public  []byte // TPMT_PUBLIC
	private []byte // TPM2B_PRIVATE contents
	pub     *ecdsa.PublicKey
}

// publicLayout is our credential template marshalled with a zero binding
// and a zero point. Every public area we make has exactly this layout; a
// credential's public area must equal it except for the binding (which
// must be rp's) and the point, so checking one is a byte comparison — no
// general TPM structure decoder ever sees untrusted bytes.
var publicLayout = tpm2.Marshal(credentialTemplate([32]byte{}))

const (
	policyOffset = 2 + 2 + 4 + 2 // type, nameAlg, objectAttributes, authPolicy size
	pointSize    = 2 + 32 + 2 + 32
)

// parseCredential checks a credential ID against rp without the TPM. Every
// failure is ErrForeignCredential.
func parseCredential(id []byte, rp [32]byte) (*credential, error) {
	if len(id) < 5 || len(id) > MaxCredentialIDLength || id[0] != credentialVersion {
		return nil, ErrForeignCredential
	}
	n := int(binary.BigEndian.Uint16(id[1:3]))
	if 3+n+2 > len(id) {
		return nil, ErrForeignCredential
	}
	m := int(binary.BigEndian.Uint16(id[3+n : 5+n]))
	if 5+n+m != len(id) || m == 0 {
		return nil, ErrForeignCredential
	}
	c := &credential{public: id[3 : 3+n], private: id[5+n:]}
	pub := c.public
	if len(pub) != len(publicLayout) {
		return nil, ErrForeignCredential
	}
	binding := Binding(rp)
	point := len(pub) - pointSize
	if !bytes.Equal(pub[:policyOffset], publicLayout[:policyOffset]) ||
		!bytes.Equal(pub[policyOffset:policyOffset+32], binding[:]) ||
		!bytes.Equal(pub[policyOffset+32:point], publicLayout[policyOffset+32:point]) ||
		pub[point] != 0 || pub[point+1] != 32 || pub[point+34] != 0 || pub[point+35] != 32 {
		return nil, ErrForeignCredential
	}
	x, y := pub[point+2:point+34], pub[point+36:]
	raw := append(append([]byte{4}, x...), y...)
	if _, err := ecdh.P256().NewPublicKey(raw); err != nil {
		return nil, ErrForeignCredential
	}
	c.pub = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	return c, nil
}

func eccPublic(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil || parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, errors.New("tpm: not a P-256 key")
	}
	pt, err := pub.Unique.ECC()
	if err != nil || len(pt.X.Buffer) != 32 || len(pt.Y.Buffer) != 32 {
		return nil, errors.New("tpm: bad ECC point")
	}
	raw := append(append([]byte{4}, pt.X.Buffer...), pt.Y.Buffer...)
	if _, err := ecdh.P256().NewPublicKey(raw); err != nil {
		return nil, errors.New("tpm: point not on P-256")
	}
	return &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(pt.X.Buffer), Y: new(big.Int).SetBytes(pt.Y.Buffer)}, nil
}

func (c *credential) id() []byte {
	out := make([]byte, 0, 5+len(c.public)+len(c.private))
	out = append(out, credentialVersion)
	out = binary.BigEndian.AppendUint16(out, uint16(len(c.public)))
	out = append(out, c.public...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(c.private)))
	return append(out, c.private...)
}

// Key is a credential key loaded in the TPM for the duration of a
// NewCredential or UseCredential callback. It implements crypto.Signer, so
// x509.CreateCertificate can have the TPM sign a certificate with it. It
// must not be used after the callback returns.
type Key struct {
	id     []byte
	e      *Engine
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    *ecdsa.PublicKey
}

// CredentialID returns the key's credential ID.
func (k *Key) CredentialID() []byte { return k.id }

// Public implements crypto.Signer.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// ECDSAPublic is Public with its concrete type.
func (k *Key) ECDSAPublic() *ecdsa.PublicKey { return k.pub }

// Sign signs a SHA-256 digest in the TPM and returns an ASN.1 DER ECDSA
// signature, as crypto.Signer requires.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.handle == 0 {
		return nil, errors.New("tpm: key used outside its callback")
	}
	if opts != nil && opts.HashFunc() != crypto.SHA256 || len(digest) != sha256.Size {
		return nil, errors.New("tpm: credential keys sign SHA-256 digests only")
	}
	var rsp *tpm2.SignResponse
	err := k.e.withSession("Sign", func(s tpm2.Session) (err error) {
		rsp, err = tpm2.Sign{
			KeyHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: s},
			Digest:    tpm2.TPM2BDigest{Buffer: digest},
			InScheme: tpm2.TPMTSigScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
			},
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(k.e.t)
		return err
	})
	if err != nil {
		return nil, err
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpm: Sign returned a non-ECDSA signature: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

// NewCredential creates a P-256 signing key inside the TPM, bound to rp,
// calls fn with it loaded (its credential ID is known by then, since U2F
// signs over it), flushes it and returns the credential ID.
func (e *Engine) NewCredential(rp [32]byte, fn func(*Key) error) ([]byte, error) {
	var id []byte
	err := e.op(func() error {
		c, h, name, err := e.createLoaded(rp)
		if err != nil {
			return err
		}
		k := &Key{id: c.id(), e: e, handle: h, name: name, pub: c.pub}
		defer func() { e.flush(h); k.handle = 0 }()
		if err := fn(k); err != nil {
			return err
		}
		id = k.id
		return nil
	})
	return id, err
}

func (e *Engine) createLoaded(rp [32]byte) (*credential, tpm2.TPMHandle, tpm2.TPM2BName, error) {
	parent := tpm2.AuthHandle{Handle: e.srk.Handle, Name: e.srk.Name, Auth: tpm2.PasswordAuth(nil)}
	tmpl := credentialTemplate(rp)
	var (
		pub2B  tpm2.TPM2BPublic
		priv   tpm2.TPM2BPrivate
		handle tpm2.TPMHandle
		name   tpm2.TPM2BName
	)
	err := e.do("CreateLoaded", func() error {
		rsp, err := tpm2.CreateLoaded{ParentHandle: parent, InPublic: tpm2.New2BTemplate(&tmpl)}.Execute(e.t)
		if err == nil {
			pub2B, priv, handle, name = rsp.OutPublic, rsp.OutPrivate, rsp.ObjectHandle, rsp.Name
		}
		return err
	})
	if errors.Is(err, tpm2.TPMRCCommandCode) {
		// TPM2_CreateLoaded arrived in TPM 2.0 revision 1.38; older chips
		// need Create then Load: one command more.
		err = e.do("Create", func() error {
			rsp, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(tmpl)}.Execute(e.t)
			if err == nil {
				pub2B, priv = rsp.OutPublic, rsp.OutPrivate
			}
			return err
		})
		if err == nil {
			handle, name, err = e.load(pub2B, priv)
		}
	}
	if err != nil {
		return nil, 0, name, err
	}
	pub, err := pub2B.Contents()
	if err != nil {
		e.flush(handle)
		return nil, 0, name, fmt.Errorf("tpm: parse created public: %w", err)
	}
	c := &credential{public: tpm2.Marshal(*pub), private: priv.Buffer}
	if c.pub, err = eccPublic(pub); err != nil {
		e.flush(handle)
		return nil, 0, name, err
	}
	return c, handle, name, nil
}

func (e *Engine) load(pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate) (tpm2.TPMHandle, tpm2.TPM2BName, error) {
	var rsp *tpm2.LoadResponse
	err := e.do("Load", func() (err error) {
		rsp, err = tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: e.srk.Handle, Name: e.srk.Name, Auth: tpm2.PasswordAuth(nil)},
			InPublic:     pub,
			InPrivate:    priv,
		}.Execute(e.t)
		return err
	})
	if err != nil {
		return 0, tpm2.TPM2BName{}, err
	}
	return rsp.ObjectHandle, rsp.Name, nil
}

// loadCredential checks id against rp, then loads it. A credential that
// passes the checks but that the TPM will not load (made under another
// primary, or altered) is ErrForeignCredential too; TPM2_Load authorizes
// only the parent (the storage primary, NoDA, empty auth), so this never
// counts towards dictionary-attack lockout.
func (e *Engine) loadCredential(id []byte, rp [32]byte) (*Key, error) {
	c, err := parseCredential(id, rp)
	if err != nil {
		return nil, err
	}
	h, name, err := e.load(tpm2.BytesAs2B[tpm2.TPMTPublic](c.public), tpm2.TPM2BPrivate{Buffer: c.private})
	if err != nil {
		// Only the TPM refusing the blob itself (a format-one error on a
		// parameter: blobRejected) means "not ours": TPM_RC_FAILURE, a dead
		// connection or a busy TPM is an error of ours, and must not tell
		// the client its credential is unknown
		// (token.TestTPMFaultAtEveryCommand found this).
		var ce *CommandError
		if errors.As(err, &ce) && blobRejected(ce.Err) {
			e.log.Info("credential rejected by the TPM", "rc", ce.Err)
			return nil, ErrForeignCredential
		}
		return nil, err
	}
	return &Key{id: id, e: e, handle: h, name: name, pub: c.pub}, nil
}

// UseCredential loads the credential id, which must be bound to rp, calls fn
// with it and flushes it.
func (e *Engine) UseCredential(id []byte, rp [32]byte, fn func(*Key) error) error {
	return e.op(func() error {
		k, err := e.loadCredential(id, rp)
		if err != nil {
			return err
		}
		defer func() { e.flush(k.handle); k.handle = 0 }()
		return fn(k)
	})
}

// CheckCredential reports whether id is a credential of this installation
// for rp (nil) or not (ErrForeignCredential), without signing: U2F's
// check-only authenticate and CTAP2's excludeList need that.
func (e *Engine) CheckCredential(id []byte, rp [32]byte) error {
	return e.UseCredential(id, rp, func(*Key) error { return nil })
}

// CredentialPublicKey returns the public key in a credential ID bound to
// rp, without the TPM.
func CredentialPublicKey(id []byte, rp [32]byte) (*ecdsa.PublicKey, error) {
	c, err := parseCredential(id, rp)
	if err != nil {
		return nil, err
	}
	return c.pub, nil
}
