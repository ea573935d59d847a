package token

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// TPMKeys adapts a tpm.Engine to Keys.
type TPMKeys struct{ Engine *tpm.Engine }

// NewCredential implements Keys.
func (t TPMKeys) NewCredential(rp [32]byte, alg int64, p CredentialPolicy, fn func(id []byte, k crypto.Signer) error) error {
	_, err := t.Engine.CreateCredential(rp, tpm.Algorithm(alg), tpm.Policy(p), func(k *tpm.Key) error { return fn(k.CredentialID(), tpmKey{k}) })
	return err
}

// Algorithms implements Keys.
func (t TPMKeys) Algorithms() []int64 {
	var out []int64
	for _, a := range t.Engine.Algorithms() {
		out = append(out, int64(a))
	}
	return out
}

// tpmKey is a tpm.Key that tells its COSE algorithm.
type tpmKey struct{ *tpm.Key }

func (k tpmKey) COSEAlgorithm() int64 { return int64(k.Algorithm()) }

// UseCredential implements Keys.
func (t TPMKeys) UseCredential(id []byte, rp [32]byte, fn func(k crypto.Signer) error) error {
	err := t.Engine.UseCredential(id, rp, func(k *tpm.Key) error { return fn(tpmKey{k}) })
	if errors.Is(err, tpm.ErrForeignCredential) {
		return fmt.Errorf("%w: %w", ErrUnknownCredential, err)
	}
	return err
}

// CredRandom implements SecretDeriver.
func (t TPMKeys) CredRandom(id []byte, uv bool) ([]byte, error) { return t.Engine.CredRandom(id, uv) }

// LargeBlobKey implements SecretDeriver.
func (t TPMKeys) LargeBlobKey(id []byte) ([]byte, error) { return t.Engine.LargeBlobKey(id) }

// NextCounter implements Keys.
func (t TPMKeys) NextCounter() (uint32, error) { return t.Engine.NextCounter() }

// Inspect implements Keys.
func (t TPMKeys) Inspect(id []byte, rp [32]byte) (CredentialPolicy, bool, error) {
	info, err := t.Engine.Inspect(id, rp)
	if err != nil {
		return CredentialPolicy{}, false, fmt.Errorf("%w: %w", ErrUnknownCredential, err)
	}
	return CredentialPolicy(info.Policy), info.Legacy, nil
}

// TPMPIN adapts a tpm.Engine to PINStore: the PIN is a TPM PIN-fail NV
// index, so the TPM counts the retries. An index the TPM has lost, or one
// someone replaced (tpm.ErrNVIndexForeign), counts as blocked: the token
// fails closed until reset.
type TPMPIN struct{ Engine *tpm.Engine }

func pinError(err error) error {
	switch {
	case errors.Is(err, tpm.ErrWrongPIN):
		return fmt.Errorf("%w: %w", ErrWrongPIN, err)
	case errors.Is(err, tpm.ErrPINBlocked), errors.Is(err, tpm.ErrPINLost), errors.Is(err, tpm.ErrNVIndexForeign):
		return fmt.Errorf("%w: %w", ErrPINBlocked, err)
	}
	return err
}

// PINStatus implements PINStore.
func (t TPMPIN) PINStatus() (bool, int, error) {
	st, err := t.Engine.PINStatus()
	return st.Set, st.Retries, pinError(err)
}

// SetPIN implements PINStore.
func (t TPMPIN) SetPIN(h []byte) error { return pinError(t.Engine.SetPIN(h)) }

// ChangePIN implements PINStore.
func (t TPMPIN) ChangePIN(oldHash, newHash []byte) (int, error) {
	r, err := t.Engine.ChangePIN(oldHash, newHash)
	return r, pinError(err)
}

// CheckPIN implements PINStore.
func (t TPMPIN) CheckPIN(h []byte) (int, error) {
	r, err := t.Engine.CheckPIN(h)
	return r, pinError(err)
}
