package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
)

// Key is a credential key loaded in the TPM for the duration of a
// NewCredential or UseCredential callback. It implements crypto.Signer, so
// x509.CreateCertificate can have the TPM sign a certificate with it. It
// must not be used after the callback returns.
type Key struct {
	id     []byte
	e      *Engine
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	kt     *keyType
	pub    crypto.PublicKey
}

// CredentialID returns the key's credential ID.
func (k *Key) CredentialID() []byte { return k.id }

// Public implements crypto.Signer.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// ECDSAPublic is Public for an ECDSA key (nil for RSA).
func (k *Key) ECDSAPublic() *ecdsa.PublicKey { p, _ := k.pub.(*ecdsa.PublicKey); return p }

// Algorithm is the key's signature algorithm.
func (k *Key) Algorithm() Algorithm { return k.kt.alg }

// Sign signs a digest in the TPM with the key's scheme and returns what
// crypto.Signer requires: an ASN.1 DER signature for ECDSA, the raw one
// for RSA (PKCS#1 v1.5 or PSS, as the algorithm says). The digest must be
// of the algorithm's hash.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.handle == 0 {
		return nil, errors.New("tpm: key used outside its callback")
	}
	if opts != nil && opts.HashFunc() != k.kt.hash || len(digest) != k.kt.hash.Size() {
		return nil, fmt.Errorf("tpm: this key signs %v digests only", k.kt.hash)
	}
	var rsp *tpm2.SignResponse
	err := k.e.withSession("Sign", func(s tpm2.Session) (err error) {
		rsp, err = tpm2.Sign{
			KeyHandle:  tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: s},
			Digest:     tpm2.TPM2BDigest{Buffer: digest},
			InScheme:   k.kt.sigScheme(),
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(k.e.t)
		return err
	})
	if err != nil {
		return nil, err
	}
	return k.kt.encodeSignature(rsp.Signature)
}

// NewCredential is CreateCredential of an ES256 key with no policy: a U2F
// registration.
func (e *Engine) NewCredential(rp [32]byte, fn func(*Key) error) ([]byte, error) {
	return e.CreateCredential(rp, ES256, Policy{}, fn)
}

// ErrUnsupportedAlgorithm: this TPM cannot make keys of that algorithm.
var ErrUnsupportedAlgorithm = errors.New("tpm: algorithm not supported by this TPM")

// CreateCredential creates a signing key of algorithm alg inside the TPM,
// bound to rp and p, calls fn with it loaded (its credential ID is known
// by then, since U2F signs over it), flushes it and returns the credential
// ID.
func (e *Engine) CreateCredential(rp [32]byte, alg Algorithm, p Policy, fn func(*Key) error) ([]byte, error) {
	policy, err := p.byte()
	if err != nil {
		return nil, err
	}
	kt, ok := keyTypeOf(alg)
	if !ok || !e.Supports(alg) {
		return nil, ErrUnsupportedAlgorithm
	}
	var id []byte
	err = e.op(func() error {
		idKey := e.idKey.Load()
		if idKey == nil {
			return errors.New("tpm: no credential ID key")
		}
		tmpl := kt.template(bindingV2(rp, policy, kt.idByte), nil)
		pub, priv, h, name, err := e.createLoaded(tmpl)
		if err != nil {
			return err
		}
		defer e.flush(h)
		unique, err := kt.uniqueOf(pub)
		if err != nil {
			return err
		}
		// The ID does not carry the public area: parsing rebuilds it from
		// the template, and TPM2_Load would refuse anything but these exact
		// bytes. Check now that the rebuilt area is the one the TPM made.
		credID := v2ID(idKey, rp, policy, kt, unique, priv.Buffer)
		c, err := parseCredentialV2(credID, rp, idKey)
		if err != nil || !bytes.Equal(c.public, tpm2.Marshal(*pub)) {
			return errors.New("tpm: the TPM made a key our credential ID cannot carry")
		}
		k := &Key{id: credID, e: e, handle: h, name: name, kt: kt, pub: c.pub}
		defer func() { k.handle = 0 }()
		if err := fn(k); err != nil {
			return err
		}
		id = k.id
		return nil
	})
	return id, err
}

// createLoaded creates and loads a child of the storage primary from tmpl.
func (e *Engine) createLoaded(tmpl tpm2.TPMTPublic) (*tpm2.TPMTPublic, tpm2.TPM2BPrivate, tpm2.TPMHandle, tpm2.TPM2BName, error) {
	parent := tpm2.AuthHandle{Handle: e.srk.Handle, Name: e.srk.Name, Auth: tpm2.PasswordAuth(nil)}
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
		return nil, priv, 0, name, err
	}
	pub, err := pub2B.Contents()
	if err != nil {
		e.flush(handle)
		return nil, priv, 0, name, fmt.Errorf("tpm: parse created public: %w", err)
	}
	return pub, priv, handle, name, nil
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

// parseCredential checks id against rp without the TPM: exactly for a
// version-2 ID, by its RP binding for a version-1 one. Every failure is
// ErrForeignCredential.
func (e *Engine) parseCredential(id []byte, rp [32]byte) (*credential, error) {
	if len(id) > 0 && id[0] == credentialV2 {
		return parseCredentialV2(id, rp, e.idKey.Load())
	}
	return parseCredentialV1(id, rp)
}

// Inspect tells, without the TPM, whether id is a credential of this
// installation for rp and what it says of its use. ErrForeignCredential
// means certainly not ours; a version-1 ID that passes (Legacy) may still
// be another installation's, which only UseCredential can tell.
func (e *Engine) Inspect(id []byte, rp [32]byte) (CredentialInfo, error) {
	c, err := e.parseCredential(id, rp)
	if err != nil {
		return CredentialInfo{}, err
	}
	return c.info, nil
}

// loadCredential checks id against rp, then loads it. A credential that
// passes the checks but that the TPM will not load (made under another
// primary, or altered) is ErrForeignCredential too; TPM2_Load authorizes
// only the parent (the storage primary, NoDA, empty auth), so this never
// counts towards dictionary-attack lockout.
func (e *Engine) loadCredential(id []byte, rp [32]byte) (*Key, error) {
	c, err := e.parseCredential(id, rp)
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
	return &Key{id: id, e: e, handle: h, name: name, kt: c.kt, pub: c.pub}, nil
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
