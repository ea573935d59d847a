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
func (t TPMKeys) NewCredential(rp [32]byte, fn func(id []byte, k crypto.Signer) error) error {
	_, err := t.Engine.NewCredential(rp, func(k *tpm.Key) error { return fn(k.CredentialID(), k) })
	return err
}

// UseCredential implements Keys.
func (t TPMKeys) UseCredential(id []byte, rp [32]byte, fn func(k crypto.Signer) error) error {
	err := t.Engine.UseCredential(id, rp, func(k *tpm.Key) error { return fn(k) })
	if errors.Is(err, tpm.ErrForeignCredential) {
		return fmt.Errorf("%w: %w", ErrUnknownCredential, err)
	}
	return err
}

// NextCounter implements Keys.
func (t TPMKeys) NextCounter() (uint32, error) { return t.Engine.NextCounter() }

// Precheck implements Keys.
func (t TPMKeys) Precheck(id []byte, rp [32]byte) error {
	if _, err := tpm.CredentialPublicKey(id, rp); err != nil {
		return fmt.Errorf("%w: %w", ErrUnknownCredential, err)
	}
	return nil
}
