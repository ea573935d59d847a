package tpm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Sealing: a secret kept on disk only as a blob that this installation's
// TPM storage primary must unwrap (TPM 2.0 Part 1, 27.7: sealed data
// objects). The credential store's metadata key lives this way, so a copy
// of the state directory without the TPM reveals no account names.

var sealTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgKeyedHash,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:     true,
		FixedParent:  true,
		UserWithAuth: true,
		NoDA:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
		Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
	}),
}

// Seal draws a 32-byte secret, seals it under the storage primary and
// returns the secret and its sealed blob. The secret is in Create's first
// parameter (TPM2B_SENSITIVE_CREATE), which the pooled session (salted to
// the storage primary, EncryptIn) encrypts: it never crosses the bus in
// the clear (TestNoSecretOnTheTPMBus).
func (e *Engine) Seal() (secret, blob []byte, err error) {
	secret = make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, err
	}
	err = e.op(func() error {
		var rsp *tpm2.CreateResponse
		if err := e.withSession("Create", func(s tpm2.Session) (err error) {
			rsp, err = tpm2.Create{
				ParentHandle: tpm2.AuthHandle{Handle: e.srk.Handle, Name: e.srk.Name, Auth: s},
				InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
					Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
				}},
				InPublic: tpm2.New2B(sealTemplate),
			}.Execute(e.t)
			return err
		}); err != nil {
			return err
		}
		blob = packWrapped(rsp.OutPublic, rsp.OutPrivate)
		return nil
	})
	if err != nil {
		clear(secret)
		return nil, nil, err
	}
	return secret, blob, nil
}

// ErrSealedForeign means a sealed blob was not made by this installation
// on this TPM (or was damaged).
var ErrSealedForeign = errors.New("tpm: sealed data is not this installation's")

// Unseal returns the secret in a blob made by Seal. The secret crosses the
// bus encrypted: the session encrypts the response parameter.
func (e *Engine) Unseal(blob []byte) ([]byte, error) {
	var secret []byte
	err := e.op(func() error {
		return e.withWrapped(blob, ErrSealedForeign, tpm2.AESEncryption(128, tpm2.EncryptOut), func(h tpm2.TPMHandle, name tpm2.TPM2BName, sess tpm2.Session) error {
			return e.do("Unseal", func() error {
				rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: h, Name: name, Auth: sess}}.Execute(e.t)
				if err == nil {
					secret = rsp.OutData.Buffer
				}
				return err
			})
		})
	})
	return secret, err
}

// A wrapped object (the sealed secret, the hmac-secret key) is kept as
// uint16 len(public) | TPM2B_PUBLIC | TPM2B_PRIVATE: useless without the
// storage primary that wrapped it.
func packWrapped(pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate) []byte {
	p := tpm2.Marshal(pub)
	blob := binary.BigEndian.AppendUint16(nil, uint16(len(p)))
	return append(append(blob, p...), tpm2.Marshal(priv)...)
}

func unpackWrapped(blob []byte) (*tpm2.TPM2BPublic, *tpm2.TPM2BPrivate, bool) {
	if len(blob) < 2 || len(blob) < 2+int(binary.BigEndian.Uint16(blob)) {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(blob))
	pub, err := unmarshalSafe[tpm2.TPM2BPublic](blob[2 : 2+n])
	if err != nil {
		return nil, nil, false
	}
	priv, err := unmarshalSafe[tpm2.TPM2BPrivate](blob[2+n:])
	if err != nil {
		return nil, nil, false
	}
	return pub, priv, true
}

// withWrapped loads a wrapped object and runs f with it and a fresh
// salted session with the given parameter encryption (its result is a secret: it crosses
// the bus encrypted), then flushes both. A blob that is malformed or that
// the TPM refuses is foreign. Called inside op.
func (e *Engine) withWrapped(blob []byte, foreign error, encryption tpm2.AuthOption, f func(tpm2.TPMHandle, tpm2.TPM2BName, tpm2.Session) error) error {
	pub, priv, ok := unpackWrapped(blob)
	if !ok {
		return foreign
	}
	h, name, err := e.load(*pub, *priv)
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && blobRejected(ce.Err) {
			return fmt.Errorf("%w: %w", foreign, err)
		}
		return err
	}
	defer e.flush(h)
	sess, closeSess, err := tpm2.HMACSession(e.t, tpm2.TPMAlgSHA256, 16,
		tpm2.Salted(e.srk.Handle, e.srkPub), encryption)
	if err != nil {
		return &CommandError{"StartAuthSession", err}
	}
	defer closeSess()
	return f(h, name, sess)
}

// unmarshalSafe parses untrusted bytes with go-tpm's decoder, which is not
// written for hostile input: a panic in it becomes an error.
func unmarshalSafe[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("tpm: malformed structure")
		}
	}()
	return tpm2.Unmarshal[T, P](b)
}
