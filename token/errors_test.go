package token_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// TestGetPINRetriesBeforeAPIN: without a PIN, getPINRetries is
// PIN_NOT_SET, not 0 retries (which clients read as blocked); once a PIN
// is set, 8.
func TestGetPINRetriesBeforeAPIN(t *testing.T) {
	a, _ := pinToken(t)
	for _, v := range []int{1, 2} {
		if st, _ := call(t, a, ctap2.CmdClientPIN, map[int]any{1: v, 2: ctap2.PINGetRetries}); st != ctap2.ErrPINNotSet {
			t.Fatalf("getPINRetries (protocol %d) before a PIN: %v, want PIN_NOT_SET", v, st)
		}
	}
	if st := newPlatform(t, a, 2).setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	if r, pc := retries(t, a); r != 8 || pc {
		t.Fatalf("getPINRetries after setPIN: %d, power cycle %v", r, pc)
	}
}

// badLengthMAC is a pinUvAuthParam of the wrong length for the platform's
// protocol that a lax check would take: protocol 2's MAC truncated to 16
// bytes (the bug behind YSA-2025-02), protocol 1's untruncated 32 bytes.
func (p *platform) badLengthMAC(key, msg []byte) []byte {
	if p.proto.Version() == 2 {
		return p.proto.Authenticate(key, msg)[:16]
	}
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// TestPinUvAuthParamLength: a pinUvAuthParam is exactly 16 bytes under
// protocol 1 and 32 under protocol 2 everywhere one is checked (setPIN,
// changePIN, makeCredential, getAssertion, credentialManagement); any
// other length is PIN_AUTH_INVALID and changes nothing: no PIN set, no
// retry spent, the token still there for the right MAC.
func TestPinUvAuthParamLength(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprint("protocol ", v), func(t *testing.T) {
			a, _ := pinToken(t)
			cred := newCredential(t, a, "example.org")
			p := newPlatform(t, a, v)

			p.agree()
			enc := p.encrypt(padded("1234"))
			st, _ := call(t, a, ctap2.CmdClientPIN, map[int]any{1: v, 2: ctap2.PINSet, 3: p.key, 4: p.badLengthMAC(p.shared, enc), 5: enc})
			if st != ctap2.ErrPINAuthInvalid || info(t, a).Options["clientPin"] {
				t.Fatalf("setPIN with a %d-byte pinUvAuthParam: %v", len(p.badLengthMAC(p.shared, enc)), st)
			}
			if st := p.setPIN(padded("1234")); st != ctap2.OK {
				t.Fatal(st)
			}

			p.agree()
			newEnc, hashEnc := p.encrypt(padded("5678")), p.encrypt(pinHashOf("1234"))
			st, _ = call(t, a, ctap2.CmdClientPIN, map[int]any{1: v, 2: ctap2.PINChange, 3: p.key,
				4: p.badLengthMAC(p.shared, append(bytes.Clone(newEnc), hashEnc...)), 5: newEnc, 6: hashEnc})
			if st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("changePIN with a bad-length pinUvAuthParam: %v", st)
			}
			if r, _ := retries(t, a); r != 8 {
				t.Fatalf("retries after the refused changePIN: %d", r)
			}

			p.getToken("1234", ctap2.PermMakeCredential, "example.org")
			cdh := sha256.Sum256([]byte("mc"))
			params := makeCredParams("example.org", map[int]any{1: cdh[:], 8: p.badLengthMAC(p.token, cdh[:]), 9: v})
			if st, _ := call(t, a, ctap2.CmdMakeCredential, params); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("makeCredential with a bad-length pinUvAuthParam: %v", st)
			}
			params[8] = p.proto.Authenticate(p.token, cdh[:])
			if st, _ := call(t, a, ctap2.CmdMakeCredential, params); st != ctap2.OK {
				t.Fatalf("makeCredential with the right pinUvAuthParam, same token: %v", st)
			}

			p.getToken("1234", ctap2.PermGetAssertion, "example.org")
			ga := map[int]any{1: "example.org", 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": cred}},
				6: p.badLengthMAC(p.token, cdh[:]), 7: v}
			if st, _ := call(t, a, ctap2.CmdGetAssertion, ga); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("getAssertion with a bad-length pinUvAuthParam: %v", st)
			}
			ga[6] = p.proto.Authenticate(p.token, cdh[:])
			if st, _ := call(t, a, ctap2.CmdGetAssertion, ga); st != ctap2.OK {
				t.Fatalf("getAssertion with the right pinUvAuthParam, same token: %v", st)
			}

			p.getToken("1234", ctap2.PermCredMgmt, "")
			msg := []byte{ctap2.CredMgmtGetMetadata}
			req := map[int]any{1: ctap2.CredMgmtGetMetadata, 3: v, 4: p.badLengthMAC(p.token, msg)}
			if st, _ := call(t, a, ctap2.CmdCredentialMgmt, req); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("credentialManagement with a bad-length pinUvAuthParam: %v", st)
			}
			req[4] = p.proto.Authenticate(p.token, msg)
			if st, _ := call(t, a, ctap2.CmdCredentialMgmt, req); st != ctap2.OK {
				t.Fatalf("credentialManagement with the right pinUvAuthParam: %v", st)
			}
		})
	}
}

// descriptors is a list of n credential descriptors.
func descriptors(n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{"type": "public-key", "id": bytes.Repeat([]byte{byte(i)}, 32)}
	}
	return out
}

// TestCTAP2ExactErrors: the status bytes of CTAP 2.1 for malformed and
// unsupported requests, through HandleCBOR.
func TestCTAP2ExactErrors(t *testing.T) {
	a, _ := newToken(t, presence.Always{})
	user := func(k string, v any) map[string]any {
		u := map[string]any{"id": []byte("user-1"), "name": "alice"}
		u[k] = v
		return u
	}
	rp := func(k string, v any) map[string]any {
		r := map[string]any{"id": "example.org"}
		r[k] = v
		return r
	}
	short := sha256.Sum256([]byte("x"))
	for _, c := range []struct {
		name  string
		extra map[int]any
		want  ctap2.Status
	}{
		{"rp.name not text", map[int]any{2: rp("name", 7)}, ctap2.ErrCBORUnexpectedType},
		{"rp.icon not text", map[int]any{2: rp("icon", 7)}, ctap2.ErrCBORUnexpectedType},
		{"rp.id a byte string", map[int]any{2: map[string]any{"id": []byte("example.org")}}, ctap2.ErrCBORUnexpectedType},
		{"user.icon not text", map[int]any{3: user("icon", []byte("x"))}, ctap2.ErrCBORUnexpectedType},
		{"user.name not text", map[int]any{3: user("name", 1)}, ctap2.ErrCBORUnexpectedType},
		{"user.displayName not text", map[int]any{3: user("displayName", true)}, ctap2.ErrCBORUnexpectedType},
		{"user.id text", map[int]any{3: map[string]any{"id": "user-1"}}, ctap2.ErrCBORUnexpectedType},
		{"pubKeyCredParams alg text", map[int]any{4: []map[string]any{{"type": "public-key", "alg": "ES256"}}}, ctap2.ErrCBORUnexpectedType},
		{"excludeList transports not text", map[int]any{5: []map[string]any{{"type": "public-key", "id": []byte{1}, "transports": []int{1}}}}, ctap2.ErrCBORUnexpectedType},
		{"options value not bool", map[int]any{7: map[string]any{"rk": 1}}, ctap2.ErrCBORUnexpectedType},
		{"extensions not a map", map[int]any{6: []int{1}}, ctap2.ErrCBORUnexpectedType},
		{"pinUvAuthProtocol text", map[int]any{8: make([]byte, 16), 9: "1"}, ctap2.ErrCBORUnexpectedType},
		{"clientDataHash 31 bytes", map[int]any{1: short[:31]}, ctap2.ErrInvalidParameter},
		{"clientDataHash 33 bytes", map[int]any{1: append(short[:], 0)}, ctap2.ErrInvalidParameter},
		{"clientDataHash empty", map[int]any{1: []byte{}}, ctap2.ErrInvalidParameter},
		{"enterpriseAttestation 1", map[int]any{10: 1}, ctap2.ErrInvalidParameter},
		{"enterpriseAttestation 2", map[int]any{10: 2}, ctap2.ErrInvalidParameter},
		{"enterpriseAttestation text", map[int]any{10: "yes"}, ctap2.ErrCBORUnexpectedType},
		{"excludeList of 9", map[int]any{5: descriptors(9)}, ctap2.ErrLimitExceeded},
		{"excludeList of 65", map[int]any{5: descriptors(65)}, ctap2.ErrLimitExceeded},
	} {
		if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", c.extra)); st != c.want {
			t.Errorf("makeCredential, %s: %v, want %v", c.name, st, c.want)
		}
	}
	if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{5: descriptors(8)})); st != ctap2.OK {
		t.Errorf("makeCredential, excludeList of 8 (maxCredentialCountInList): %v", st)
	}
	cdh := sha256.Sum256([]byte("ga"))
	for _, c := range []struct {
		name   string
		params map[int]any
		want   ctap2.Status
	}{
		{"rpId not text", map[int]any{1: 5, 2: cdh[:]}, ctap2.ErrCBORUnexpectedType},
		{"allowList not an array", map[int]any{1: "example.org", 2: cdh[:], 3: map[string]any{"type": "public-key"}}, ctap2.ErrCBORUnexpectedType},
		{"allowList entry id text", map[int]any{1: "example.org", 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": "abc"}}}, ctap2.ErrCBORUnexpectedType},
		{"options value not bool", map[int]any{1: "example.org", 2: cdh[:], 5: map[string]any{"up": "no"}}, ctap2.ErrCBORUnexpectedType},
		{"clientDataHash 16 bytes", map[int]any{1: "example.org", 2: cdh[:16]}, ctap2.ErrInvalidParameter},
		{"allowList of 9", map[int]any{1: "example.org", 2: cdh[:], 3: descriptors(9)}, ctap2.ErrLimitExceeded},
		{"allowList of 65", map[int]any{1: "example.org", 2: cdh[:], 3: descriptors(65)}, ctap2.ErrLimitExceeded},
		{"allowList of 8, none ours", map[int]any{1: "example.org", 2: cdh[:], 3: descriptors(8)}, ctap2.ErrNoCredentials},
	} {
		if st, _ := call(t, a, ctap2.CmdGetAssertion, c.params); st != c.want {
			t.Errorf("getAssertion, %s: %v, want %v", c.name, st, c.want)
		}
	}
}

// TestSetPINWhenSetIsPINAuthInvalid: CTAP 2.1 section 6.5.5.5: "If a PIN
// has already been set, authenticator returns CTAP2_ERR_PIN_AUTH_INVALID".
func TestSetPINWhenSetIsPINAuthInvalid(t *testing.T) {
	a, _ := pinToken(t)
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	if st := p.setPIN(padded("5678")); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("setPIN with a PIN set: %v, want PIN_AUTH_INVALID", st)
	}
	if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
		t.Fatalf("the first PIN after the refused setPIN: %v", st)
	}
}
