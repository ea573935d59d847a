package token_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// clockedPINToken is pinToken with a clock the test moves and a prompter
// of its choice.
func clockedPINToken(t *testing.T, p presence.Prompter) (*token.Authenticator, *time.Time) {
	t.Helper()
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 50)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	now := time.Unix(1_800_000_000, 0)
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: p, Resident: store, PIN: token.TPMPIN{Engine: e},
		Now: func() time.Time { return now }, Logger: testLogger(t)})
	t.Cleanup(a.Close)
	return a, &now
}

// credentialIDOf reads the credential ID out of a makeCredential response.
func credentialIDOf(t *testing.T, body []byte) []byte {
	t.Helper()
	var mc ctap2.MakeCredentialResponse
	if err := cbor.Unmarshal(body, &mc); err != nil || len(mc.AuthData) < 55 {
		t.Fatalf("makeCredential response: %v", err)
	}
	n := int(binary.BigEndian.Uint16(mc.AuthData[53:55]))
	return bytes.Clone(mc.AuthData[55 : 55+n])
}

// newCredential makes a non-discoverable credential without the PIN.
func newCredential(t *testing.T, a *token.Authenticator, rp string) []byte {
	t.Helper()
	st, body := call(t, a, ctap2.CmdMakeCredential, makeCredParams(rp, nil))
	if st != ctap2.OK {
		t.Fatalf("makeCredential for %s: %v", rp, st)
	}
	return credentialIDOf(t, body)
}

// assertWithToken runs getAssertion for cred with a pinUvAuthParam from
// the platform's current token, and returns the status and the flags.
func (p *platform) assertWithToken(rp string, cred []byte, up bool) (ctap2.Status, byte) {
	p.t.Helper()
	cdh := sha256.Sum256(fmt.Appendf(nil, "ga %s %v %d", rp, up, time.Now().UnixNano()))
	params := map[int]any{1: rp, 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": cred}},
		6: p.proto.Authenticate(p.token, cdh[:]), 7: p.proto.Version()}
	if !up {
		params[5] = map[string]bool{"up": false}
	}
	st, body := call(p.t, p.a, ctap2.CmdGetAssertion, params)
	if st != ctap2.OK {
		return st, 0
	}
	var rsp ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(body, &rsp); err != nil {
		p.t.Fatal(err)
	}
	return st, rsp.AuthData[32]
}

// TestPinUvAuthTokenOneUseWithPresence: after a makeCredential, or a
// getAssertion that collected user presence, the pinUvAuthToken has lost
// its user verified flag and its permissions (CTAP 2.1 section 6.5.2.1,
// clearUserVerifiedFlag and clearPinUvAuthTokenPermissionsExceptLbw, called
// from sections 6.1.2 and 6.2.2). Silent assertions do not use it up.
func TestPinUvAuthTokenOneUseWithPresence(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprint("protocol ", v), func(t *testing.T) {
			a, _ := pinToken(t)
			cred := newCredential(t, a, "example.org")
			p := newPlatform(t, a, v)
			if st := p.setPIN(padded("1234")); st != ctap2.OK {
				t.Fatal(st)
			}
			if st := p.getToken("1234", ctap2.PermMakeCredential|ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
				t.Fatal(st)
			}
			cdh := sha256.Sum256([]byte("mc"))
			params := makeCredParams("example.org", map[int]any{1: cdh[:], 8: p.proto.Authenticate(p.token, cdh[:]), 9: v})
			st, body := call(t, a, ctap2.CmdMakeCredential, params)
			var mc ctap2.MakeCredentialResponse
			if st != ctap2.OK || cbor.Unmarshal(body, &mc) != nil || mc.AuthData[32]&ctap2.FlagUV == 0 {
				t.Fatalf("makeCredential with the token: %v", st)
			}
			// The mc consumed the token: its ga permission is gone too.
			if st, _ := p.assertWithToken("example.org", cred, true); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("getAssertion with the token a makeCredential used: %v, want PIN_AUTH_INVALID", st)
			}
			again := sha256.Sum256([]byte("mc again"))
			params[1], params[8] = again[:], p.proto.Authenticate(p.token, again[:])
			if st, _ := call(t, a, ctap2.CmdMakeCredential, params); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("second makeCredential with one token: %v, want PIN_AUTH_INVALID", st)
			}

			if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
				t.Fatal(st)
			}
			for i := range 2 {
				if st, flags := p.assertWithToken("example.org", cred, false); st != ctap2.OK || flags != ctap2.FlagUV {
					t.Fatalf("silent assertion %d: %v flags %#x, want UV only", i, st, flags)
				}
			}
			if st, flags := p.assertWithToken("example.org", cred, true); st != ctap2.OK || flags != ctap2.FlagUV|ctap2.FlagUP {
				t.Fatalf("assertion with presence: %v flags %#x", st, flags)
			}
			for _, up := range []bool{true, false} {
				if st, _ := p.assertWithToken("example.org", cred, up); st != ctap2.ErrPINAuthInvalid {
					t.Fatalf("up=%v after an assertion with presence, same token: %v, want PIN_AUTH_INVALID", up, st)
				}
			}
			// A new token gives UV again.
			if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
				t.Fatal(st)
			}
			if st, flags := p.assertWithToken("example.org", cred, true); st != ctap2.OK || flags != ctap2.FlagUV|ctap2.FlagUP {
				t.Fatalf("fresh token: %v flags %#x", st, flags)
			}
		})
	}
}

// TestPinUvAuthTokenKeptWhenPresenceDenied: the flags are cleared only
// once presence was collected; a denied or timed-out prompt leaves the
// token usable.
func TestPinUvAuthTokenKeptWhenPresenceDenied(t *testing.T) {
	s := &scripted{answers: make(chan error, 8)}
	a, _ := clockedPINToken(t, s)
	s.answers <- nil
	cred := newCredential(t, a, "example.org")
	p := newPlatform(t, a, 2)
	p.setPIN(padded("1234"))
	p.getToken("1234", ctap2.PermGetAssertion, "example.org")
	s.answers <- presence.ErrDenied
	if st, _ := p.assertWithToken("example.org", cred, true); st != ctap2.ErrOperationDenied {
		t.Fatalf("denied: %v", st)
	}
	s.answers <- nil
	if st, flags := p.assertWithToken("example.org", cred, true); st != ctap2.OK || flags != ctap2.FlagUV|ctap2.FlagUP {
		t.Fatalf("after a denial, same token: %v flags %#x", st, flags)
	}
}

// TestPinUvAuthTokenPermissionsClearedByMakeCredential: every permission
// but lbw goes, so a token with mc and cm cannot manage credentials after
// it made one.
func TestPinUvAuthTokenPermissionsClearedByMakeCredential(t *testing.T) {
	a, _ := pinToken(t)
	p := newPlatform(t, a, 2)
	p.setPIN(padded("1234"))
	if st := p.getToken("1234", ctap2.PermMakeCredential|ctap2.PermCredMgmt, "example.org"); st != ctap2.OK {
		t.Fatal(st)
	}
	if st, _ := p.credMgmt(ctap2.CredMgmtEnumerateCredsBegin, map[int]any{1: hashOf("example.org")}); st != ctap2.ErrNoCredentials {
		t.Fatalf("enumerateCredentials before makeCredential: %v", st)
	}
	cdh := sha256.Sum256([]byte("rk"))
	params := makeCredParams("example.org", map[int]any{1: cdh[:], 7: map[string]bool{"rk": true}, 8: p.proto.Authenticate(p.token, cdh[:]), 9: 2})
	if st, _ := call(t, a, ctap2.CmdMakeCredential, params); st != ctap2.OK {
		t.Fatalf("makeCredential: %v", st)
	}
	if st, _ := p.credMgmt(ctap2.CredMgmtEnumerateCredsBegin, map[int]any{1: hashOf("example.org")}); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("enumerateCredentials with the token makeCredential used: %v, want PIN_AUTH_INVALID", st)
	}
}

// TestPinUvAuthTokenUsageTimer: unused, a token stops 30 s after it was
// issued; used, 10 minutes after (section 6.5.2.1).
func TestPinUvAuthTokenUsageTimer(t *testing.T) {
	a, now := clockedPINToken(t, presence.Always{})
	cred := newCredential(t, a, "example.org")
	p := newPlatform(t, a, 2)
	p.setPIN(padded("1234"))
	p.getToken("1234", ctap2.PermGetAssertion, "example.org")
	*now = now.Add(31 * time.Second)
	if st, _ := p.assertWithToken("example.org", cred, false); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("token unused for 31 s: %v, want PIN_AUTH_INVALID", st)
	}
	p.getToken("1234", ctap2.PermGetAssertion, "example.org")
	*now = now.Add(29 * time.Second)
	if st, _ := p.assertWithToken("example.org", cred, false); st != ctap2.OK {
		t.Fatalf("token used after 29 s: %v", st)
	}
	*now = now.Add(9*time.Minute + 30*time.Second) // 9:59 after issue
	if st, _ := p.assertWithToken("example.org", cred, false); st != ctap2.OK {
		t.Fatalf("token used after 9:59: %v", st)
	}
	*now = now.Add(2 * time.Second)
	if st, _ := p.assertWithToken("example.org", cred, false); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("token after 10:01: %v, want PIN_AUTH_INVALID", st)
	}
}

// TestPinUvAuthTokenRPBinding: a token without a permissions RP ID (the
// legacy getPinToken's) is bound to the RP of its first makeCredential or
// getAssertion, and refused for any other after that; one with an RP ID
// is refused for others from the start.
func TestPinUvAuthTokenRPBinding(t *testing.T) {
	a, _ := pinToken(t)
	credA, credB := newCredential(t, a, "a.example"), newCredential(t, a, "b.example")
	p := newPlatform(t, a, 2)
	p.setPIN(padded("1234"))
	p.agree()
	st, body := call(t, a, ctap2.CmdClientPIN, map[int]any{1: 2, 2: ctap2.PINGetToken, 3: p.key, 6: p.encrypt(pinHashOf("1234"))})
	var rsp ctap2.ClientPINResponse
	if st != ctap2.OK || cbor.Unmarshal(body, &rsp) != nil {
		t.Fatalf("getPinToken: %v", st)
	}
	tok, err := p.proto.Decrypt(p.shared, rsp.PinUvAuthToken)
	if err != nil {
		t.Fatal(err)
	}
	p.token = tok
	if st, _ := p.assertWithToken("b.example", credB, false); st != ctap2.OK {
		t.Fatalf("unbound token, first RP: %v", st)
	}
	if st, _ := p.assertWithToken("a.example", credA, false); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("token bound to b.example used for a.example: %v, want PIN_AUTH_INVALID", st)
	}
	if st, _ := p.assertWithToken("b.example", credB, false); st != ctap2.OK {
		t.Fatalf("bound token, its RP: %v", st)
	}
	p.getToken("1234", ctap2.PermGetAssertion, "a.example")
	if st, _ := p.assertWithToken("b.example", credB, false); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("token for a.example used for b.example: %v, want PIN_AUTH_INVALID", st)
	}
}
