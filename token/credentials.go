package token

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/tpm-u2f/tpm-u2f/credstore"
)

// CredentialPolicy is what a credential ID carries about its use; the
// TPM binds it to the key (package tpm's Policy).
type CredentialPolicy struct {
	// CredProtect is the credProtect level (CTAP 2.1 section 12.1), 0 when
	// none was asked for.
	CredProtect uint8
	// Discoverable: a resident credential, alive only while the credential
	// store holds it.
	Discoverable bool
	// ThirdPartyPayment: made with the thirdPartyPayment extension (CTAP
	// 2.2 section 12.9).
	ThirdPartyPayment bool
}

// credProtect levels (CTAP 2.1 section 12.1).
const (
	credProtectUVOptional         = 1
	credProtectUVOptionalWithList = 2
	credProtectUVRequired         = 3
)

// candidate is a credential a client named that is ours and alive, with
// what the token knows of it.
type candidate struct {
	credstore.Credential // the ID; the metadata too when stored
	// legacy: an ID made before IDs carried their policy; only the TPM can
	// confirm it is ours (confirm).
	legacy bool
}

// named decides whether id names a live credential of ours for rp,
// without the TPM: the ID's tag and policy say whose it is and how it may
// be used, whatever the credential store holds. A discoverable credential
// lives only while the store holds it, so one deleted through credential
// management or replaced by a new registration never signs again. A
// legacy ID keeps the semantics it had: credProtect from the store, and
// refused once deleted or replaced.
func (a *Authenticator) named(id []byte, rp [32]byte) (candidate, bool) {
	p, legacy, err := a.keys.Inspect(id, rp)
	if err != nil {
		return candidate{}, false
	}
	c := candidate{Credential: credstore.Credential{ID: id, CredProtect: p.CredProtect}, legacy: legacy}
	if !legacy && !p.Discoverable {
		return c, true
	}
	if a.cfg.Resident == nil {
		return c, !p.Discoverable
	}
	stored, found := a.cfg.Resident.Find(id)
	switch {
	case found:
		c.Credential = *stored
		if !legacy {
			c.CredProtect = p.CredProtect // the ID's word, not the file's
		}
		return c, true
	case p.Discoverable:
		a.log.Info("credential refused: deleted or replaced", "rp_id_hash", fmt.Sprintf("%x", rp[:8]))
		return candidate{}, false
	case a.cfg.Resident.Revoked(id):
		a.log.Info("legacy credential refused: deleted or replaced", "rp_id_hash", fmt.Sprintf("%x", rp[:8]))
		return candidate{}, false
	}
	return c, true
}

// confirm asks the TPM whether a legacy candidate is ours (a version-2 ID
// needs no asking). Not ours is (false, nil); a TPM failure is an error,
// never "not ours".
func (a *Authenticator) confirm(c candidate, rp [32]byte) (bool, error) {
	if !c.legacy {
		return true, nil
	}
	err := a.keys.UseCredential(c.ID, rp, func(crypto.Signer) error { return nil })
	if errors.Is(err, ErrUnknownCredential) {
		return false, nil
	}
	return err == nil, err
}

// firstNamed returns the first credential of list that is ours, alive and
// usable with or without user verification as uv says (CTAP 2.1 section
// 6.2.2 step 7, 6.1.2 step 4): every entry is considered, so an allowList
// that names the user's other keys first still finds this one.
func (a *Authenticator) firstNamed(ids [][]byte, rp [32]byte, uv bool) (*candidate, error) {
	for _, id := range ids {
		c, ok := a.named(id, rp)
		if !ok || c.CredProtect >= credProtectUVRequired && !uv {
			continue
		}
		mine, err := a.confirm(c, rp)
		if err != nil {
			return nil, err
		}
		if mine {
			return &c, nil
		}
	}
	return nil, nil
}
