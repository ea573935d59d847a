package token_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// TestLockedTokenSignsNothing: while locked, no signature and no
// hmac-secret output leaves the token, also for requests that ask nobody:
// CTAP2 up=false assertions (OPERATION_DENIED), getNextAssertion, U2F
// authenticate with P1 0x08 (0x6985, as for presence not yet given); and
// nobody is asked. Check-only (0x07) still answers. Unlock restores all.
func TestLockedTokenSignsNothing(t *testing.T) {
	s := &scripted{answers: make(chan error, 8)}
	a, _ := newToken(t, s)
	s.answers <- nil
	c := makeCredential(t, a, "example.org")
	app, chal := sha256.Sum256([]byte("https://example.org")), sha256.Sum256([]byte("c"))
	s.answers <- nil
	r := register(t, a, app, chal)
	prompts := s.count()

	a.Lock()
	if st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("silent")), c, map[string]bool{"up": false}); st != ctap2.ErrOperationDenied {
		t.Fatalf("locked, up=false getAssertion: %v, want OPERATION_DENIED", st)
	}
	if rsp := authenticate(a, 0x08, app, chal, r.handle, false); sw(rsp) != token.SWConditionsNotSatisfied || len(rsp) != 2 {
		t.Fatalf("locked, U2F authenticate P1=0x08: %x, want 6985", rsp)
	}
	if got := sw(authenticate(a, 0x08, sha256.Sum256([]byte("https://other.example")), chal, r.handle, false)); got != token.SWWrongData {
		t.Fatalf("locked, P1=0x08, handle of another appID: %04X, want 6A80 (as with P1=0x03)", got)
	}
	if got := sw(authenticate(a, 0x07, app, chal, r.handle, false)); got != token.SWConditionsNotSatisfied {
		t.Fatalf("locked, check-only, our handle: %04X, want 6985", got)
	}
	if got := sw(authenticate(a, 0x07, sha256.Sum256([]byte("https://other.example")), chal, r.handle, false)); got != token.SWWrongData {
		t.Fatalf("locked, check-only, another appID: %04X, want 6A80", got)
	}
	if s.count() != prompts {
		t.Fatal("a locked token asked the user")
	}

	a.Unlock()
	if st, flags, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("silent")), c, map[string]bool{"up": false}); st != ctap2.OK || flags&ctap2.FlagUP != 0 {
		t.Fatalf("unlocked, up=false getAssertion: %v", st)
	}
	rsp := authenticate(a, 0x08, app, chal, r.handle, false)
	if sw(rsp) != token.SWNoError {
		t.Fatalf("unlocked, P1=0x08: SW %04X", sw(rsp))
	}
	verifyAssertion(t, r, app, chal, rsp, 0)
}

// TestLockedTokenNoHMACSecretNoNextAssertion: hmac-secret output needs an
// assertion, which a locked token refuses with or without up; a
// getNextAssertion list started before the lock is dropped by it; and a
// pinUvAuthToken from before the lock does not outlive it.
func TestLockedTokenNoHMACSecretNoNextAssertion(t *testing.T) {
	a, _ := pinToken(t)
	st, body := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{6: map[string]any{"hmac-secret": true}}))
	if st != ctap2.OK {
		t.Fatal(st)
	}
	cred := credentialIDOf(t, body)
	p := newPlatform(t, a, 2)
	salt := bytes.Repeat([]byte{0xa5}, 32)
	if st, out, _ := p.hmacSecretAssert("example.org", cred, salt, false); st != ctap2.OK || len(out) != 32 {
		t.Fatalf("hmac-secret before the lock: %v", st)
	}
	a.Lock()
	if st, _, _ := p.hmacSecretAssert("example.org", cred, salt, false); st != ctap2.ErrOperationDenied {
		t.Fatalf("locked, hmac-secret: %v, want OPERATION_DENIED", st)
	}
	// The same without presence: before, the silent path answered it.
	p.agree()
	saltEnc := p.encrypt(salt)
	silent := sha256.Sum256([]byte("silent hmac"))
	st, _ = call(t, a, ctap2.CmdGetAssertion, map[int]any{1: "example.org", 2: silent[:], 3: []map[string]any{{"type": "public-key", "id": cred}},
		4: map[string]any{"hmac-secret": map[int]any{1: p.key, 2: saltEnc, 3: p.proto.Authenticate(p.shared, saltEnc), 4: 2}},
		5: map[string]bool{"up": false}})
	if st != ctap2.ErrOperationDenied {
		t.Fatalf("locked, up=false hmac-secret: %v, want OPERATION_DENIED", st)
	}
	a.Unlock()

	// Two discoverable credentials: getAssertion, lock, getNextAssertion.
	for i := range 2 {
		if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("passkeys.example", map[int]any{3: map[string]any{"id": []byte{byte(i)}}, 7: map[string]bool{"rk": true}})); st != ctap2.OK {
			t.Fatal(st)
		}
	}
	cdh := sha256.Sum256([]byte("list"))
	if st, _ := call(t, a, ctap2.CmdGetAssertion, map[int]any{1: "passkeys.example", 2: cdh[:], 5: map[string]bool{"up": false}}); st != ctap2.OK {
		t.Fatal(st)
	}
	a.Lock()
	if st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil); st == ctap2.OK {
		t.Fatal("locked, getNextAssertion signed")
	}
	a.Unlock()
	if st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("getNextAssertion after lock and unlock: %v, want NOT_ALLOWED (the list is gone)", st)
	}

	p.setPIN(padded("1234"))
	p.getToken("1234", ctap2.PermGetAssertion, "example.org")
	a.Lock()
	a.Unlock()
	if st, _ := p.assertWithToken("example.org", cred, false); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("a pinUvAuthToken from before the lock: %v, want PIN_AUTH_INVALID", st)
	}
}
