// Package webauthnrp is a small WebAuthn relying party built on
// github.com/go-webauthn/webauthn, playing both the server and the
// browser's part for a U2F authenticator: it builds the client data,
// talks to the key through package u2fhost, turns U2F responses into
// WebAuthn ones the way browsers do ("fido-u2f" attestation), and lets
// go-webauthn verify them. The demo and the tests use it, so that the
// token's output is judged by code nobody here wrote.
package webauthnrp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// RP is a relying party at https://<rpID>.
type RP struct {
	ID     string
	Origin string
	wa     *webauthn.WebAuthn
}

// New returns a relying party for rpID.
func New(rpID string) (*RP, error) {
	origin := "https://" + rpID
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "tpm-u2f demo", RPOrigins: []string{origin}})
	if err != nil {
		return nil, fmt.Errorf("webauthn relying party %q: %w", rpID, err)
	}
	return &RP{ID: rpID, Origin: origin, wa: wa}, nil
}

// User is an account at the relying party.
type User struct {
	ID          []byte
	Name        string
	Credentials []webauthn.Credential
}

func (u *User) WebAuthnID() []byte                         { return u.ID }
func (u *User) WebAuthnName() string                       { return u.Name }
func (u *User) WebAuthnDisplayName() string                { return u.Name }
func (u *User) WebAuthnCredentials() []webauthn.Credential { return u.Credentials }

var b64 = base64.RawURLEncoding

// clientData is the CollectedClientData a browser serializes (WebAuthn
// §5.8.1), members in the order browsers write them. The key signs only
// its hash; go-webauthn parses it and checks type, challenge and origin.
func (r *RP) clientData(typ, challenge string) ([]byte, error) {
	b, err := json.Marshal(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, challenge, r.Origin, false})
	if err != nil {
		return nil, fmt.Errorf("client data: %w", err)
	}
	return b, nil
}

// Register makes a credential for u on the key behind c and has
// go-webauthn verify the fido-u2f attestation. The credential is added to
// u.Credentials.
func (r *RP) Register(ctx context.Context, c *ctaphid.Client, u *User) (*webauthn.Credential, error) {
	// "direct", so that go-webauthn verifies the fido-u2f statement
	// instead of being allowed to treat it as "none".
	_, session, err := r.wa.BeginRegistration(u, webauthn.WithConveyancePreference(protocol.PreferDirectAttestation))
	if err != nil {
		return nil, fmt.Errorf("begin registration: %w", err)
	}
	cd, err := r.clientData("webauthn.create", session.Challenge)
	if err != nil {
		return nil, err
	}
	rpHash := sha256.Sum256([]byte(r.ID))
	reg, err := u2fhost.Register(ctx, c, sha256.Sum256(cd), rpHash)
	if err != nil {
		return nil, err
	}
	// COSE_Key EC2 (RFC 9053): kty 2, alg ES256 (-7), crv P-256 (1), x, y;
	// in CTAP2 canonical CBOR as browsers encode it.
	coseKey, err := ctap2.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: reg.PublicKeyRaw[1:33], -3: reg.PublicKeyRaw[33:65]})
	if err != nil {
		return nil, fmt.Errorf("encode COSE key: %w", err)
	}
	// What a browser builds from a U2F registration (WebAuthn §8.6):
	// flags UP|AT, counter 0, an all-zero AAGUID, the key handle as the
	// credential ID.
	authData := append([]byte{}, rpHash[:]...)
	authData = append(authData, 0x41, 0, 0, 0, 0) // UP | AT, counter 0
	authData = append(authData, make([]byte, 16)...)
	authData = append(authData, byte(len(reg.KeyHandle)>>8), byte(len(reg.KeyHandle)))
	authData = append(authData, reg.KeyHandle...)
	authData = append(authData, coseKey...)
	attObj, err := ctap2.Marshal(map[string]any{
		"fmt":      "fido-u2f",
		"attStmt":  map[string]any{"sig": reg.Signature, "x5c": [][]byte{reg.CertificateDER}},
		"authData": authData,
	})
	if err != nil {
		return nil, fmt.Errorf("encode attestation object: %w", err)
	}
	return r.finishRegistration(u, session, reg.KeyHandle, cd, attObj)
}

// Login signs in u with its first credential over U2F, as a browser does
// for a U2F-only key, and has go-webauthn verify the assertion. A
// signature counter that did not move past the stored one is an error
// (the key may have been cloned); otherwise the stored count advances.
// tamper, to show that verification is real, flips a bit of the signature
// before it goes to go-webauthn.
func (r *RP) Login(ctx context.Context, c *ctaphid.Client, u *User, tamper bool) (*webauthn.Credential, error) {
	if len(u.Credentials) == 0 {
		return nil, fmt.Errorf("user %q has no credential", u.Name)
	}
	_, session, err := r.wa.BeginLogin(u)
	if err != nil {
		return nil, fmt.Errorf("begin login: %w", err)
	}
	cd, err := r.clientData("webauthn.get", session.Challenge)
	if err != nil {
		return nil, err
	}
	rpHash := sha256.Sum256([]byte(r.ID))
	handle := u.Credentials[0].ID
	a, err := u2fhost.Authenticate(ctx, c, sha256.Sum256(cd), rpHash, handle, u2fhost.EnforcePresence)
	if err != nil {
		return nil, err
	}
	// WebAuthn §8.6: a browser's authenticator data for a U2F assertion is
	// rpIdHash | the U2F presence byte as flags (UP = 0x01) | counter.
	authData := append(append([]byte{}, rpHash[:]...), a.FlagsAndCounter...)
	sig := append([]byte(nil), a.Signature...)
	if tamper {
		sig[len(sig)-1] ^= 1
	}
	return r.finishLogin(u, session, handle, cd, authData, sig)
}
