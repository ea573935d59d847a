package token_test

import (
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// newCredentialWithPIN makes a discoverable credential with an mc token.
func newCredentialWithPIN(t *testing.T, a *token.Authenticator, p *platform, rp string) []byte {
	t.Helper()
	if st := p.getToken("1234", ctap2.PermMakeCredential, rp); st != ctap2.OK {
		t.Fatal(st)
	}
	params := makeCredParams(rp, map[int]any{7: map[string]bool{"rk": true}})
	params[8] = p.proto.Authenticate(p.token, params[1].([]byte))
	params[9] = p.proto.Version()
	st, body := call(t, a, ctap2.CmdMakeCredential, params)
	if st != ctap2.OK {
		t.Fatalf("makeCredential: %v", st)
	}
	return credentialIDOf(t, body)
}

// TestPersistentCredMgmtToken: CTAP 2.2's pcmr token lists credentials
// (metadata, RPs, credentials) without a usage timer and without being
// used up, survives a re-plug and other tokens, but never deletes or
// updates, never signs, and ends with changePIN.
func TestPersistentCredMgmtToken(t *testing.T) {
	a, now := clockedPINToken(t, presence.Always{})
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	if i := info(t, a); !i.Options["perCredMgmtRO"] {
		t.Fatal("getInfo: no perCredMgmtRO")
	}
	cred := newCredentialWithPIN(t, a, p, "example.org")

	for _, bad := range []struct {
		perms uint64
		rp    string
	}{{ctap2.PermPersistentCredMgmtRO | ctap2.PermCredMgmt, ""}, {ctap2.PermPersistentCredMgmtRO, "example.org"}} {
		if st := p.getToken("1234", bad.perms, bad.rp); st != ctap2.ErrInvalidParameter {
			t.Fatalf("pcmr with %x %q: %v", bad.perms, bad.rp, st)
		}
	}
	if st := p.getToken("1234", ctap2.PermPersistentCredMgmtRO, ""); st != ctap2.OK {
		t.Fatalf("pcmr token: %v", st)
	}
	pcmr := p.token
	readAll := func(when string) {
		t.Helper()
		p.token = pcmr
		if st, rsp := p.credMgmt(ctap2.CredMgmtGetMetadata, nil); st != ctap2.OK || *rsp.ExistingCount != 1 {
			t.Fatalf("%s: metadata: %v", when, st)
		}
		if st, _ := p.credMgmt(ctap2.CredMgmtEnumerateRPsBegin, nil); st != ctap2.OK {
			t.Fatalf("%s: enumerateRPs: %v", when, st)
		}
		if st, _ := p.credMgmt(ctap2.CredMgmtEnumerateCredsBegin, map[int]any{1: hashOf("example.org")}); st != ctap2.OK {
			t.Fatalf("%s: enumerateCredentials: %v", when, st)
		}
	}
	readAll("fresh")
	*now = now.Add(time.Hour) // far past the usage timer's 10 minutes
	readAll("an hour later")
	a.PowerCycle()
	readAll("after a re-plug")
	// Another token (cm) does not end it.
	if st := p.getToken("1234", ctap2.PermCredMgmt, ""); st != ctap2.OK {
		t.Fatal(st)
	}
	readAll("after a cm token")

	p.token = pcmr
	if st, _ := p.credMgmt(ctap2.CredMgmtUpdateUser, map[int]any{2: map[string]any{"type": "public-key", "id": cred}, 3: map[string]any{"id": []byte("user-1"), "name": "x"}}); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("updateUserInformation with pcmr: %v", st)
	}
	if st, _ := p.credMgmt(ctap2.CredMgmtDelete, map[int]any{2: map[string]any{"type": "public-key", "id": cred}}); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("deleteCredential with pcmr: %v", st)
	}
	if st, _ := p.assertWithToken("example.org", cred, true); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("getAssertion with pcmr: %v", st)
	}

	if st := p.changePIN("1234", "5678"); st != ctap2.OK {
		t.Fatal(st)
	}
	p.token = pcmr
	if st, _ := p.credMgmt(ctap2.CredMgmtGetMetadata, nil); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("pcmr after changePIN: %v", st)
	}
}
