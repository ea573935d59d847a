package webauthnrp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// ctap2Call sends one CTAP2 command and returns the CBOR body of a
// successful response.
func ctap2Call(ctx context.Context, c *ctaphid.Client, cmd byte, params any) ([]byte, error) {
	msg := []byte{cmd}
	if params != nil {
		b, err := ctap2.Marshal(params)
		if err != nil {
			return nil, err
		}
		msg = append(msg, b...)
	}
	rsp, err := c.Call(ctx, ctaphid.CmdCBOR, msg)
	if err != nil {
		return nil, err
	}
	if len(rsp) == 0 {
		return nil, fmt.Errorf("ctap2: empty response")
	}
	if rsp[0] != byte(ctap2.OK) {
		return nil, ctap2.Status(rsp[0])
	}
	return rsp[1:], nil
}

// RegisterCTAP2 makes a credential for u with authenticatorMakeCredential
// and has go-webauthn verify its attestation (packed).
func (r *RP) RegisterCTAP2(ctx context.Context, c *ctaphid.Client, u *User) (*webauthn.Credential, error) {
	return r.registerCTAP2(ctx, c, u, false)
}

// RegisterPasskey is RegisterCTAP2 for a discoverable credential (rk).
func (r *RP) RegisterPasskey(ctx context.Context, c *ctaphid.Client, u *User) (*webauthn.Credential, error) {
	return r.registerCTAP2(ctx, c, u, true)
}

func (r *RP) registerCTAP2(ctx context.Context, c *ctaphid.Client, u *User, rk bool) (*webauthn.Credential, error) {
	_, session, err := r.wa.BeginRegistration(u, webauthn.WithConveyancePreference(protocol.PreferDirectAttestation))
	if err != nil {
		return nil, err
	}
	cd, err := r.clientData("webauthn.create", session.Challenge)
	if err != nil {
		return nil, err
	}
	cdh := sha256.Sum256(cd)
	body, err := ctap2Call(ctx, c, ctap2.CmdMakeCredential, map[int]any{
		1: cdh[:],
		2: map[string]any{"id": r.ID, "name": r.ID},
		3: map[string]any{"id": u.ID, "name": u.Name, "displayName": u.Name},
		4: []map[string]any{{"type": "public-key", "alg": ctap2.AlgES256}},
		7: map[string]bool{"rk": rk},
	})
	if err != nil {
		return nil, fmt.Errorf("CTAP2 makeCredential: %w", err)
	}
	var mc struct {
		Fmt      string          `cbor:"1,keyasint"`
		AuthData []byte          `cbor:"2,keyasint"`
		AttStmt  cbor.RawMessage `cbor:"3,keyasint"`
	}
	if err := cbor.Unmarshal(body, &mc); err != nil {
		return nil, fmt.Errorf("makeCredential response: %w", err)
	}
	// The WebAuthn attestation object is the same three things keyed by name.
	attObj, err := ctap2.Marshal(map[string]any{"fmt": mc.Fmt, "attStmt": mc.AttStmt, "authData": mc.AuthData})
	if err != nil {
		return nil, err
	}
	if len(mc.AuthData) < 55 {
		return nil, fmt.Errorf("short authenticator data")
	}
	n := int(mc.AuthData[53])<<8 | int(mc.AuthData[54])
	if len(mc.AuthData) < 55+n {
		return nil, fmt.Errorf("truncated credential ID")
	}
	id := mc.AuthData[55 : 55+n]
	return r.finishRegistration(u, session, id, cd, attObj)
}

func (r *RP) finishRegistration(u *User, session *webauthn.SessionData, id, cd, attObj []byte) (*webauthn.Credential, error) {
	body, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(id), "rawId": b64.EncodeToString(id), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b64.EncodeToString(cd), "attestationObject": b64.EncodeToString(attObj)},
	})
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("parse registration: %w", err)
	}
	cred, err := r.wa.CreateCredential(u, *session, parsed)
	if err != nil {
		return nil, fmt.Errorf("go-webauthn rejected the registration: %w", err)
	}
	u.Credentials = append(u.Credentials, *cred)
	return cred, nil
}

// LoginCTAP2 signs in u with its last credential through
// authenticatorGetAssertion and has go-webauthn verify the assertion.
func (r *RP) LoginCTAP2(ctx context.Context, c *ctaphid.Client, u *User) (*webauthn.Credential, error) {
	if len(u.Credentials) == 0 {
		return nil, fmt.Errorf("user %q has no credential", u.Name)
	}
	_, session, err := r.wa.BeginLogin(u)
	if err != nil {
		return nil, err
	}
	cd, err := r.clientData("webauthn.get", session.Challenge)
	if err != nil {
		return nil, err
	}
	cdh := sha256.Sum256(cd)
	last := &u.Credentials[len(u.Credentials)-1]
	body, err := ctap2Call(ctx, c, ctap2.CmdGetAssertion, map[int]any{
		1: r.ID, 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": last.ID}},
	})
	if err != nil {
		return nil, fmt.Errorf("CTAP2 getAssertion: %w", err)
	}
	var ga struct {
		AuthData  []byte `cbor:"2,keyasint"`
		Signature []byte `cbor:"3,keyasint"`
	}
	if err := cbor.Unmarshal(body, &ga); err != nil {
		return nil, err
	}
	return r.finishLogin(u, session, last.ID, cd, ga.AuthData, ga.Signature)
}

func (r *RP) finishLogin(u *User, session *webauthn.SessionData, id, cd, authData, sig []byte) (*webauthn.Credential, error) {
	body, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(id), "rawId": b64.EncodeToString(id), "type": "public-key",
		"response": map[string]string{
			"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(authData),
			"signature": b64.EncodeToString(sig),
		},
	})
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("parse assertion: %w", err)
	}
	cred, err := r.wa.ValidateLogin(u, *session, parsed)
	if err != nil {
		return nil, fmt.Errorf("go-webauthn rejected the login: %w", err)
	}
	// go-webauthn only flags a counter that did not move forward (and then
	// keeps the old count); a relying party decides. This one refuses: the
	// token's counter is strictly increasing, so anything else is a bug or
	// a cloned key.
	if cred.Authenticator.CloneWarning {
		return nil, fmt.Errorf("signature counter %d did not move past the stored %d: refusing a possibly cloned key",
			parsed.Response.AuthenticatorData.Counter, cred.Authenticator.SignCount)
	}
	for i := range u.Credentials {
		if bytes.Equal(u.Credentials[i].ID, cred.ID) {
			u.Credentials[i].Authenticator.SignCount = cred.Authenticator.SignCount
		}
	}
	return cred, nil
}

// LoginPasskey signs in without naming a user or credential (no
// allowList): the token finds its discoverable credential for the RP and
// returns the user handle, by which go-webauthn finds the user among users.
func (r *RP) LoginPasskey(ctx context.Context, c *ctaphid.Client, users []*User) (*User, *webauthn.Credential, error) {
	_, session, err := r.wa.BeginDiscoverableLogin()
	if err != nil {
		return nil, nil, err
	}
	cd, err := r.clientData("webauthn.get", session.Challenge)
	if err != nil {
		return nil, nil, err
	}
	cdh := sha256.Sum256(cd)
	body, err := ctap2Call(ctx, c, ctap2.CmdGetAssertion, map[int]any{1: r.ID, 2: cdh[:]})
	if err != nil {
		return nil, nil, fmt.Errorf("CTAP2 getAssertion: %w", err)
	}
	var ga struct {
		Credential struct {
			ID []byte `cbor:"id"`
		} `cbor:"1,keyasint"`
		AuthData  []byte `cbor:"2,keyasint"`
		Signature []byte `cbor:"3,keyasint"`
		User      struct {
			ID []byte `cbor:"id"`
		} `cbor:"4,keyasint"`
	}
	if err := cbor.Unmarshal(body, &ga); err != nil {
		return nil, nil, err
	}
	b, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(ga.Credential.ID), "rawId": b64.EncodeToString(ga.Credential.ID), "type": "public-key",
		"response": map[string]string{
			"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(ga.AuthData),
			"signature": b64.EncodeToString(ga.Signature), "userHandle": b64.EncodeToString(ga.User.ID),
		},
	})
	parsed, err := protocol.ParseCredentialRequestResponseBytes(b)
	if err != nil {
		return nil, nil, fmt.Errorf("parse assertion: %w", err)
	}
	var found *User
	cred, err := r.wa.ValidateDiscoverableLogin(func(_, handle []byte) (webauthn.User, error) {
		for _, u := range users {
			if bytes.Equal(u.ID, handle) {
				found = u
				return u, nil
			}
		}
		return nil, fmt.Errorf("no user with handle %x", handle)
	}, *session, parsed)
	if err != nil {
		return nil, nil, fmt.Errorf("go-webauthn rejected the passkey login: %w", err)
	}
	return found, cred, nil
}
