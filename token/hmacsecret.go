package token

import (
	"crypto/hmac"
	"crypto/sha256"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// SecretDeriver gives hmac-secret its per-credential CredRandom (package
// tpm's Engine, through TPMKeys): derived inside the TPM, never from
// anything the credential ID carries.
type SecretDeriver interface {
	CredRandom(credentialID []byte, uv bool) ([]byte, error)
	// LargeBlobKey is the credential's largeBlobKey (CTAP 2.1 section
	// 12.3), derived the same way under another label.
	LargeBlobKey(credentialID []byte) ([]byte, error)
}

// hmacSecretInput is getAssertion's hmac-secret extension input (CTAP 2.1
// section 12.5), checked and decrypted: the salts and what encrypts the
// output.
type hmacSecretInput struct {
	proto  pin.Protocol
	shared []byte
	salts  []byte // 32 or 64 bytes
}

func (h *hmacSecretInput) zero() {
	if h != nil {
		pin.Zero(h.shared)
		pin.Zero(h.salts)
	}
}

// parseHMACSecret checks the hmac-secret input of a getAssertion: the
// platform's key agreement key (with the authenticator's, from
// getKeyAgreement), saltAuth over saltEnc, and one or two 32-byte salts.
// Absent, it is nil.
func (a *Authenticator) parseHMACSecret(ext map[string]cbor.RawMessage) (*hmacSecretInput, error) {
	return a.parseHMACSecretNamed(ext, "hmac-secret")
}

// parseHMACSecretNamed is parseHMACSecret for the input under name:
// makeCredential's hmac-secret-mc has getAssertion's hmac-secret form
// (CTAP 2.2, the hmac-secret-mc extension).
func (a *Authenticator) parseHMACSecretNamed(ext map[string]cbor.RawMessage, name string) (*hmacSecretInput, error) {
	raw, ok := ext[name]
	if !ok || a.cfg.Secrets == nil {
		return nil, nil
	}
	var in struct {
		KeyAgreement *ctap2.COSEKey `cbor:"1,keyasint"`
		SaltEnc      []byte         `cbor:"2,keyasint"`
		SaltAuth     []byte         `cbor:"3,keyasint"`
		Protocol     *uint64        `cbor:"4,keyasint"`
	}
	if err := cbor.Unmarshal(raw, &in); err != nil {
		return nil, ctap2.ErrCBORUnexpectedType
	}
	if in.KeyAgreement == nil || in.SaltEnc == nil || in.SaltAuth == nil {
		return nil, ctap2.ErrMissingParameter
	}
	version := uint64(1)
	if in.Protocol != nil {
		version = *in.Protocol
	}
	proto, ok := pin.ProtocolByVersion(int(min(version, 1<<16)))
	if !ok {
		return nil, ctap2.ErrInvalidParameter
	}
	a.pin.mu.Lock()
	defer a.pin.mu.Unlock()
	if a.pin.ka == nil {
		return nil, ctap2.ErrPINAuthInvalid // no getKeyAgreement in this power cycle
	}
	shared, err := sharedSecret(&a.pin, proto, in.KeyAgreement)
	if err != nil {
		return nil, err
	}
	if !proto.Verify(shared, in.SaltEnc, in.SaltAuth) {
		pin.Zero(shared)
		return nil, ctap2.ErrPINAuthInvalid
	}
	salts, err := proto.Decrypt(shared, in.SaltEnc)
	if err != nil || len(salts) != 32 && len(salts) != 64 {
		pin.Zero(shared)
		pin.Zero(salts)
		return nil, ctap2.ErrInvalidLength
	}
	return &hmacSecretInput{proto: proto, shared: shared, salts: salts}, nil
}

// hmacSecretOutput computes the extension output for one credential:
// HMAC-SHA-256(CredRandom, salt) for each salt, encrypted to the platform.
func (a *Authenticator) hmacSecretOutput(in *hmacSecretInput, credentialID []byte, uv bool) ([]byte, error) {
	credRandom, err := a.cfg.Secrets.CredRandom(credentialID, uv)
	if err != nil {
		return nil, err
	}
	defer pin.Zero(credRandom)
	var out []byte
	for i := 0; i < len(in.salts); i += 32 {
		m := hmac.New(sha256.New, credRandom)
		m.Write(in.salts[i : i+32])
		out = m.Sum(out)
	}
	defer pin.Zero(out)
	return in.proto.Encrypt(in.shared, out)
}

// hmacSecretRequested reads makeCredential's "hmac-secret": true.
func hmacSecretRequested(ext map[string]cbor.RawMessage) (bool, error) {
	raw, ok := ext["hmac-secret"]
	if !ok {
		return false, nil
	}
	var v bool
	if err := cbor.Unmarshal(raw, &v); err != nil {
		return false, ctap2.ErrCBORUnexpectedType
	}
	return v, nil
}
