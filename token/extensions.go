package token

import (
	"crypto/sha256"
	"slices"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// maxCredBlobLength is getInfo's maxCredBlobLength (CTAP 2.1 section
// 12.2: at least 32).
const maxCredBlobLength = 32

// boolExtension reads an extension whose input is a boolean; absent is
// (false, false).
func boolExtension(ext map[string]cbor.RawMessage, name string) (value, present bool, err error) {
	raw, ok := ext[name]
	if !ok {
		return false, false, nil
	}
	if err := cbor.Unmarshal(raw, &value); err != nil {
		return false, true, ctap2.ErrCBORUnexpectedType
	}
	return value, true, nil
}

// makeCredentialExtensions is what makeCredential was asked for beyond
// credProtect and hmac-secret.
type makeCredentialExtensions struct {
	credBlob          []byte // nil: not asked
	largeBlobKey      bool
	minPinLength      bool
	thirdPartyPayment bool
	hmacSecretMC      *hmacSecretInput
}

// parseMakeCredentialExtensions checks the CTAP 2.1/2.2 extension inputs
// of a makeCredential. rk is the request's rk option, hmacSecret whether
// it asked for "hmac-secret": true.
func (a *Authenticator) parseMakeCredentialExtensions(ext map[string]cbor.RawMessage, rk, hmacSecret bool) (makeCredentialExtensions, error) {
	var out makeCredentialExtensions
	if raw, ok := ext["credBlob"]; ok && a.cfg.Resident != nil {
		var b []byte
		if err := cbor.Unmarshal(raw, &b); err != nil {
			return out, ctap2.ErrCBORUnexpectedType
		}
		out.credBlob = b
		if out.credBlob == nil {
			out.credBlob = []byte{}
		}
	}
	if a.largeBlobsOn() {
		v, present, err := boolExtension(ext, "largeBlobKey")
		if err != nil {
			return out, err
		}
		// Section 12.3: only true is a valid input, and only for a
		// discoverable credential (OpenSK and trussed answer the same).
		if present && (!v || !rk) {
			return out, ctap2.ErrInvalidOption
		}
		out.largeBlobKey = v
	}
	if a.cfg.PIN != nil {
		v, _, err := boolExtension(ext, "minPinLength")
		if err != nil {
			return out, err
		}
		out.minPinLength = v
	}
	v, _, err := boolExtension(ext, "thirdPartyPayment")
	if err != nil {
		return out, err
	}
	out.thirdPartyPayment = v
	if _, ok := ext["hmac-secret-mc"]; ok && a.cfg.Secrets != nil {
		// CTAP 2.2's hmac-secret-mc comes with "hmac-secret":
		// true (OpenSK: MISSING_PARAMETER otherwise).
		if !hmacSecret {
			return out, ctap2.ErrMissingParameter
		}
		in, err := a.parseHMACSecretNamed(ext, "hmac-secret-mc")
		if err != nil {
			return out, err
		}
		out.hmacSecretMC = in
	}
	return out, nil
}

// minPINLengthFor is what the minPinLength extension (CTAP 2.1 section
// 12.4) may tell rpID: the current minimum PIN length, and whether rpID
// is on the list authenticatorConfig's setMinPINLength keeps
// (minPinLengthRPIDs), kept as SHA-256 hashes in the TPM's settings.
// Settings that cannot be read tell nobody.
func (a *Authenticator) minPINLengthFor(rpID string) (uint64, bool) {
	s, err := a.settings()
	if err != nil {
		return pin.MinLength, false
	}
	listed := slices.Contains(s.MinPINLengthRPIDs, sha256.Sum256([]byte(rpID)))
	return uint64(minPINLength(s)), listed
}

// getAssertionExtensions is what a getAssertion asked for beyond
// hmac-secret.
type getAssertionExtensions struct {
	credBlob          bool
	largeBlobKey      bool
	thirdPartyPayment bool
}

func (a *Authenticator) parseGetAssertionExtensions(ext map[string]cbor.RawMessage) (getAssertionExtensions, error) {
	var out getAssertionExtensions
	var err error
	if a.cfg.Resident != nil {
		if out.credBlob, _, err = boolExtension(ext, "getCredBlob"); err != nil {
			return out, err
		}
	}
	if a.largeBlobsOn() {
		v, present, err := boolExtension(ext, "largeBlobKey")
		if err != nil {
			return out, err
		}
		if present && !v {
			return out, ctap2.ErrInvalidOption // section 12.3
		}
		out.largeBlobKey = v
	}
	if out.thirdPartyPayment, _, err = boolExtension(ext, "thirdPartyPayment"); err != nil {
		return out, err
	}
	return out, nil
}

func (a *Authenticator) largeBlobsOn() bool {
	return a.cfg.LargeBlobs != nil && a.cfg.Resident != nil && a.cfg.Secrets != nil
}
