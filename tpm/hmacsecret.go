package tpm

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// CredRandom for the hmac-secret extension (CTAP 2.1 section 12.5).
//
// A hardware key draws two random values per credential and keeps them
// inside itself. We keep nothing per credential: each CredRandom is
// TPM2_HMAC under one keyed-hash key of this installation, over a label,
// the uv flag and the credential ID's hash. The key is made in the TPM,
// lives on disk only wrapped by the storage primary (identity.json), and
// never leaves the TPM in the clear; a credential ID alone, or the whole
// state directory without the TPM, yields no CredRandom. A reset (new
// seed, new primary) makes the old wrapped key unloadable, so every
// CredRandom changes with the credentials.

var hmacKeyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgKeyedHash,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
		Scheme: tpm2.TPMTKeyedHashScheme{
			Scheme:  tpm2.TPMAlgHMAC,
			Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256}),
		},
	}),
}

// provisionHMACKey creates the keyed-hash key on first use of an
// identity (and after a reset). Called with e.mu held.
func (e *Engine) provisionHMACKey() error {
	if e.id.HMACKey != nil {
		return nil
	}
	var rsp *tpm2.CreateResponse
	if err := e.do("Create", func() (err error) {
		rsp, err = tpm2.Create{
			ParentHandle: tpm2.AuthHandle{Handle: e.srk.Handle, Name: e.srk.Name, Auth: tpm2.PasswordAuth(nil)},
			InPublic:     tpm2.New2B(hmacKeyTemplate),
		}.Execute(e.t)
		return err
	}); err != nil {
		return err
	}
	e.id.HMACKey = packWrapped(rsp.OutPublic, rsp.OutPrivate)
	e.log.Info("hmac-secret key created in the TPM")
	return nil
}

// ErrNoHMACKey: the identity's hmac-secret key does not load (made under
// another primary, or damaged).
var ErrNoHMACKey = errors.New("tpm: the hmac-secret key does not load")

// CredRandom returns the 32-byte CredRandom of a credential, with or
// without user verification. The result crosses the bus encrypted (a
// salted session with response encryption).
func (e *Engine) CredRandom(credentialID []byte, uv bool) ([]byte, error) {
	idHash := sha256.Sum256(credentialID)
	msg := append([]byte("tpm-u2f CredRandom v1"), boolByte(uv))
	msg = append(msg, idHash[:]...)
	var out []byte
	err := e.op(func() (err error) {
		out, err = e.hmac(msg)
		return err
	})
	return out, err
}

// LargeBlobKey returns the 32-byte largeBlobKey of a credential (CTAP
// 2.1 section 12.3), derived like CredRandom under another label: stable
// for the credential's life, nothing stored, and gone with a reset (new
// HMAC key). It crosses the bus encrypted.
func (e *Engine) LargeBlobKey(credentialID []byte) ([]byte, error) {
	idHash := sha256.Sum256(credentialID)
	msg := append([]byte("tpm-u2f largeBlobKey v1"), idHash[:]...)
	var out []byte
	err := e.op(func() (err error) {
		out, err = e.hmac(msg)
		return err
	})
	return out, err
}

// hmac is TPM2_HMAC under the installation's keyed-hash key, its input and
// output encrypted on the bus. Called inside op (or with e.mu held).
func (e *Engine) hmac(msg []byte) ([]byte, error) {
	var out []byte
	err := e.withWrapped(e.id.HMACKey, ErrNoHMACKey, tpm2.AESEncryption(128, tpm2.EncryptInOut), func(h tpm2.TPMHandle, name tpm2.TPM2BName, sess tpm2.Session) error {
		return e.do("HMAC", func() error {
			rsp, err := tpm2.Hmac{
				Handle:  tpm2.AuthHandle{Handle: h, Name: name, Auth: sess},
				Buffer:  tpm2.TPM2BMaxBuffer{Buffer: msg},
				HashAlg: tpm2.TPMAlgSHA256,
			}.Execute(e.t)
			if err == nil {
				out = rsp.OutHMAC.Buffer
			}
			return err
		})
	})
	if err == nil && len(out) != 32 {
		return nil, fmt.Errorf("tpm: HMAC returned %d bytes", len(out))
	}
	return out, err
}

// deriveIDKey derives the key of credential ID tags (credentialid.go)
// from the installation's keyed-hash key, once per identity: at start and
// after a reset. It lives in memory only; a new identity (new HMAC key)
// makes every tag of the old one fail. Called with e.mu held.
func (e *Engine) deriveIDKey() error {
	out, err := e.hmac([]byte("tpm-u2f credential id key v1"))
	if err != nil {
		return err
	}
	var k [32]byte
	copy(k[:], out)
	clear(out)
	e.idKey.Store(&k)
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
