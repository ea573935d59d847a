package token_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// pinToken is a token with a PIN store in the simulator's TPM and a
// credential store.
func pinToken(t *testing.T) (*token.Authenticator, *credstore.Store) {
	t.Helper()
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 50)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, Resident: store, PIN: token.TPMPIN{Engine: e}, Secrets: token.TPMKeys{Engine: e}, Logger: testLogger(t)})
	t.Cleanup(a.Close)
	return a, store
}

// platform is the client side of a PIN/UV auth protocol.
type platform struct {
	t      *testing.T
	a      *token.Authenticator
	proto  pin.Protocol
	shared []byte
	key    map[int]any // our COSE key
	token  []byte
}

func newPlatform(t *testing.T, a *token.Authenticator, version int) *platform {
	p, _ := pin.ProtocolByVersion(version)
	return &platform{t: t, a: a, proto: p}
}

func (p *platform) agree() {
	p.t.Helper()
	st, body := call(p.t, p.a, ctap2.CmdClientPIN, map[int]any{1: p.proto.Version(), 2: ctap2.PINGetKeyAgreement})
	var rsp ctap2.ClientPINResponse
	if st != ctap2.OK || cbor.Unmarshal(body, &rsp) != nil || rsp.KeyAgreement == nil {
		p.t.Fatalf("getKeyAgreement: %v", st)
	}
	if k := rsp.KeyAgreement; k.Kty != 2 || k.Alg != -25 || k.Crv != 1 {
		p.t.Fatalf("key agreement key %+v", k)
	}
	ours, err := pin.NewKeyAgreement()
	if err != nil {
		p.t.Fatal(err)
	}
	p.shared, err = ours.SharedSecret(p.proto, rsp.KeyAgreement.X, rsp.KeyAgreement.Y)
	if err != nil {
		p.t.Fatal(err)
	}
	x, y := ours.PublicXY()
	p.key = map[int]any{1: 2, 3: -25, -1: 1, -2: x, -3: y}
}

func padded(s string) []byte {
	b := make([]byte, 64)
	copy(b, s)
	return b
}

func pinHashOf(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:16] }

func (p *platform) encrypt(b []byte) []byte {
	p.t.Helper()
	out, err := p.proto.Encrypt(p.shared, b)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *platform) setPIN(newPIN []byte) ctap2.Status {
	p.agree()
	enc := p.encrypt(newPIN)
	st, _ := call(p.t, p.a, ctap2.CmdClientPIN, map[int]any{1: p.proto.Version(), 2: ctap2.PINSet, 3: p.key,
		4: p.proto.Authenticate(p.shared, enc), 5: enc})
	return st
}

func (p *platform) changePIN(old, newPIN string) ctap2.Status {
	p.agree()
	newEnc, hashEnc := p.encrypt(padded(newPIN)), p.encrypt(pinHashOf(old))
	st, _ := call(p.t, p.a, ctap2.CmdClientPIN, map[int]any{1: p.proto.Version(), 2: ctap2.PINChange, 3: p.key,
		4: p.proto.Authenticate(p.shared, append(bytes.Clone(newEnc), hashEnc...)), 5: newEnc, 6: hashEnc})
	return st
}

func (p *platform) getToken(pinText string, perms uint64, rpID string) ctap2.Status {
	p.agree()
	params := map[int]any{1: p.proto.Version(), 2: ctap2.PINGetTokenUsingPINWithPerms, 3: p.key,
		6: p.encrypt(pinHashOf(pinText)), 9: perms}
	if rpID != "" {
		params[10] = rpID
	}
	st, body := call(p.t, p.a, ctap2.CmdClientPIN, params)
	if st != ctap2.OK {
		return st
	}
	var rsp ctap2.ClientPINResponse
	if err := cbor.Unmarshal(body, &rsp); err != nil {
		p.t.Fatal(err)
	}
	tok, err := p.proto.Decrypt(p.shared, rsp.PinUvAuthToken)
	if err != nil || len(tok) != 32 {
		p.t.Fatalf("pinUvAuthToken: %d bytes, %v", len(tok), err)
	}
	p.token = tok
	return st
}

func retries(t *testing.T, a *token.Authenticator) (uint64, bool) {
	t.Helper()
	st, body := call(t, a, ctap2.CmdClientPIN, map[int]any{1: 2, 2: ctap2.PINGetRetries})
	var rsp ctap2.ClientPINResponse
	if st != ctap2.OK || cbor.Unmarshal(body, &rsp) != nil || rsp.PinRetries == nil {
		t.Fatalf("getPINRetries: %v", st)
	}
	return *rsp.PinRetries, rsp.PowerCycleState != nil && *rsp.PowerCycleState
}

func info(t *testing.T, a *token.Authenticator) ctap2.Info {
	t.Helper()
	st, body := call(t, a, ctap2.CmdGetInfo, nil)
	var i ctap2.Info
	if st != ctap2.OK || cbor.Unmarshal(body, &i) != nil {
		t.Fatalf("getInfo: %v", st)
	}
	return i
}

func TestClientPINBothProtocols(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(map[int]string{1: "one", 2: "two"}[v], func(t *testing.T) {
			a, _ := pinToken(t)
			i := info(t, a)
			if i.Options["clientPin"] || !i.Options["pinUvAuthToken"] || i.MinPINLength != 4 || len(i.PinUvAuthProtocols) != 2 {
				t.Fatalf("getInfo before a PIN: %+v", i)
			}
			p := newPlatform(t, a, v)
			if st := p.getToken("1234", ctap2.PermMakeCredential, "example.org"); st != ctap2.ErrPINNotSet {
				t.Fatalf("token without a PIN: %v", st)
			}
			// PIN rules: code points, not bytes; padding checked.
			for _, bad := range [][]byte{padded("123"), padded("äää"), padded(string([]byte{0xff, 0xfe, 0xfd, 0xfc})), append(padded("1234")[:63], 1)} {
				if st := p.setPIN(bad); st != ctap2.ErrPINPolicyViolation {
					t.Fatalf("setPIN(%q): %v", bad, st)
				}
			}
			if st := p.setPIN(padded("ääää")); st != ctap2.OK {
				t.Fatalf("setPIN: %v", st)
			}
			if st := p.setPIN(padded("5678")); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("second setPIN: %v", st)
			}
			if !info(t, a).Options["clientPin"] {
				t.Fatal("getInfo: clientPin false after setPIN")
			}
			if r, _ := retries(t, a); r != 8 {
				t.Fatalf("retries %d", r)
			}
			if st := p.getToken("ääää", ctap2.PermMakeCredential|ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
				t.Fatalf("getPinUvAuthToken: %v", st)
			}
			// makeCredential with the token: UV set.
			cdh := sha256.Sum256([]byte("cdh"))
			params := makeCredParams("example.org", map[int]any{1: cdh[:], 8: p.proto.Authenticate(p.token, cdh[:]), 9: v})
			st, body := call(t, a, ctap2.CmdMakeCredential, params)
			var mc ctap2.MakeCredentialResponse
			if st != ctap2.OK || cbor.Unmarshal(body, &mc) != nil || mc.AuthData[32]&ctap2.FlagUV == 0 {
				t.Fatalf("makeCredential with pinUvAuthParam: %v", st)
			}
			// A MAC under another key, or for another RP, is refused.
			params[8] = p.proto.Authenticate(bytes.Repeat([]byte{7}, 32), cdh[:])
			if st, _ := call(t, a, ctap2.CmdMakeCredential, params); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("bad pinUvAuthParam: %v", st)
			}
			other := makeCredParams("other.example", map[int]any{1: cdh[:], 8: p.proto.Authenticate(p.token, cdh[:]), 9: v})
			if st, _ := call(t, a, ctap2.CmdMakeCredential, other); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("token bound to example.org used for other.example: %v", st)
			}
			// changePIN: the old token is gone, the new PIN works.
			if st := p.changePIN("ääää", "4321"); st != ctap2.OK {
				t.Fatalf("changePIN: %v", st)
			}
			params[8] = p.proto.Authenticate(p.token, cdh[:])
			if st, _ := call(t, a, ctap2.CmdMakeCredential, params); st != ctap2.ErrPINAuthInvalid {
				t.Fatalf("token from before changePIN: %v", st)
			}
			if st := p.getToken("ääää", ctap2.PermGetAssertion, "example.org"); st != ctap2.ErrPINInvalid {
				t.Fatalf("old PIN: %v", st)
			}
			if st := p.getToken("4321", ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
				t.Fatalf("new PIN: %v", st)
			}
		})
	}
}

func TestWrongPINsBlockPowerCycleThenPIN(t *testing.T) {
	a, _ := pinToken(t)
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	wrong := func(want ctap2.Status) {
		t.Helper()
		if st := p.getToken("9999", ctap2.PermGetAssertion, "example.org"); st != want {
			t.Fatalf("wrong PIN: %v, want %v", st, want)
		}
	}
	// The delays between failures (1 s, 2 s) are counted from the last
	// failure: the whole test waits about 3 s per power cycle.
	wrong(ctap2.ErrPINInvalid)
	wrong(ctap2.ErrPINInvalid)
	wrong(ctap2.ErrPINAuthBlocked)
	if r, pc := retries(t, a); r != 5 || !pc {
		t.Fatalf("after 3 wrong PINs: retries %d, power cycle needed %v", r, pc)
	}
	// Until a re-plug, not even the right PIN is checked.
	if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.ErrPINAuthBlocked {
		t.Fatalf("right PIN before the re-plug: %v", st)
	}
	if r, _ := retries(t, a); r != 5 {
		t.Fatalf("a blocked attempt spent a retry: %d", r)
	}
	a.PowerCycle()
	wrong(ctap2.ErrPINInvalid)
	wrong(ctap2.ErrPINInvalid)
	wrong(ctap2.ErrPINAuthBlocked)
	a.PowerCycle()
	wrong(ctap2.ErrPINInvalid) // 7th
	wrong(ctap2.ErrPINBlocked) // 8th: no retries left
	a.PowerCycle()
	if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.ErrPINBlocked {
		t.Fatalf("right PIN when blocked: %v", st)
	}
	if r, _ := retries(t, a); r != 0 {
		t.Fatalf("retries when blocked: %d", r)
	}
}

func TestPinUvAuthProbesAndRequirements(t *testing.T) {
	a, _ := pinToken(t)
	// The browser's "touch to select" probe: a zero-length pinUvAuthParam.
	probe := makeCredParams("example.org", map[int]any{8: []byte{}, 9: 2})
	if st, _ := call(t, a, ctap2.CmdMakeCredential, probe); st != ctap2.ErrPINNotSet {
		t.Fatalf("probe without a PIN: %v", st)
	}
	p := newPlatform(t, a, 1)
	p.setPIN(padded("1234"))
	if st, _ := call(t, a, ctap2.CmdMakeCredential, probe); st != ctap2.ErrPINInvalid {
		t.Fatalf("probe with a PIN: %v", st)
	}
	// A discoverable credential needs the PIN once there is one; a
	// non-discoverable one does not (makeCredUvNotRqd).
	if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{7: map[string]bool{"rk": true}})); st != ctap2.ErrPUATRequired {
		t.Fatalf("rk without PIN: %v", st)
	}
	if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", nil)); st != ctap2.OK {
		t.Fatalf("non-discoverable without PIN: %v", st)
	}
	// Missing or unknown protocol.
	if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{8: bytes.Repeat([]byte{1}, 16)})); st != ctap2.ErrMissingParameter {
		t.Fatalf("no protocol: %v", st)
	}
	if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{8: bytes.Repeat([]byte{1}, 16), 9: 3})); st != ctap2.ErrInvalidParameter {
		t.Fatalf("protocol 3: %v", st)
	}
	// A token without the mc permission does not make credentials.
	p.getToken("1234", ctap2.PermGetAssertion, "example.org")
	cdh := sha256.Sum256([]byte("x"))
	if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{1: cdh[:], 8: p.proto.Authenticate(p.token, cdh[:]), 9: 1})); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("token without mc: %v", st)
	}
	// Unsupported permissions.
	if st := p.getToken("1234", ctap2.PermBioEnrollment, ""); st != ctap2.ErrUnauthorizedPerm {
		t.Fatalf("be permission: %v", st)
	}
	// Subcommands that need a built-in UV method.
	if st, _ := call(t, a, ctap2.CmdClientPIN, map[int]any{1: 1, 2: ctap2.PINGetUVRetries}); st != ctap2.ErrInvalidSubcommand {
		t.Fatalf("getUVRetries: %v", st)
	}
}

func (p *platform) credMgmt(sub int, params map[int]any) (ctap2.Status, ctap2.CredMgmtResponse) {
	p.t.Helper()
	req := map[int]any{1: sub}
	msg := []byte{byte(sub)}
	if params != nil {
		raw, err := ctap2.Marshal(params)
		if err != nil {
			p.t.Fatal(err)
		}
		req[2] = cbor.RawMessage(raw)
		msg = append(msg, raw...)
	}
	if sub != ctap2.CredMgmtEnumerateRPsNext && sub != ctap2.CredMgmtEnumerateCredsNext {
		req[3] = p.proto.Version()
		req[4] = p.proto.Authenticate(p.token, msg)
	}
	st, body := call(p.t, p.a, ctap2.CmdCredentialMgmt, req)
	var rsp ctap2.CredMgmtResponse
	if st == ctap2.OK && len(body) > 0 {
		if err := cbor.Unmarshal(body, &rsp); err != nil {
			p.t.Fatal(err)
		}
	}
	return st, rsp
}

func TestCredentialManagement(t *testing.T) {
	a, store := pinToken(t)
	p := newPlatform(t, a, 2)
	p.setPIN(padded("1234"))
	for i, rp := range []string{"a.example", "a.example", "b.example"} {
		// One token per makeCredential: it uses the token up.
		p.getToken("1234", ctap2.PermMakeCredential, rp)
		cdh := sha256.Sum256([]byte{byte(i)})
		params := makeCredParams(rp, map[int]any{1: cdh[:], 3: map[string]any{"id": []byte{byte(i)}, "name": "user" + string('0'+rune(i))},
			7: map[string]bool{"rk": true}, 8: p.proto.Authenticate(p.token, cdh[:]), 9: 2})
		if st, _ := call(t, a, ctap2.CmdMakeCredential, params); st != ctap2.OK {
			t.Fatalf("rk makeCredential %d: %v", i, st)
		}
	}
	if st, _ := p.credMgmt(ctap2.CredMgmtEnumerateRPsNext, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("next without begin: %v", st)
	}
	// A token without cm is refused; one bound to an RP cannot list RPs.
	if st, _ := p.credMgmt(ctap2.CredMgmtGetMetadata, nil); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("metadata with an mc token: %v", st)
	}
	p.getToken("1234", ctap2.PermCredMgmt, "")
	st, rsp := p.credMgmt(ctap2.CredMgmtGetMetadata, nil)
	if st != ctap2.OK || *rsp.ExistingCount != 3 || *rsp.MaxRemaining != 47 {
		t.Fatalf("metadata: %v %+v", st, rsp)
	}
	st, rsp = p.credMgmt(ctap2.CredMgmtEnumerateRPsBegin, nil)
	if st != ctap2.OK || *rsp.TotalRPs != 2 {
		t.Fatalf("enumerateRPsBegin: %v %+v", st, rsp)
	}
	rps := []string{rsp.RP.ID}
	st, rsp = p.credMgmt(ctap2.CredMgmtEnumerateRPsNext, nil)
	if st != ctap2.OK {
		t.Fatal(st)
	}
	rps = append(rps, rsp.RP.ID)
	if rps[0] == rps[1] || !bytes.Equal(rsp.RPIDHash, hashOf(rsp.RP.ID)) {
		t.Fatalf("RPs %v", rps)
	}
	if st, _ := p.credMgmt(ctap2.CredMgmtEnumerateRPsNext, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("next past the end: %v", st)
	}
	st, rsp = p.credMgmt(ctap2.CredMgmtEnumerateCredsBegin, map[int]any{1: hashOf("a.example")})
	if st != ctap2.OK || *rsp.TotalCredentials != 2 || rsp.PublicKey == nil || rsp.User.Name == "" || *rsp.CredProtect != 1 {
		t.Fatalf("enumerateCredentialsBegin: %v %+v", st, rsp)
	}
	first := rsp.CredentialID
	st, rsp = p.credMgmt(ctap2.CredMgmtEnumerateCredsNext, nil)
	if st != ctap2.OK || bytes.Equal(rsp.CredentialID.ID, first.ID) {
		t.Fatalf("enumerateCredentialsGetNextCredential: %v", st)
	}
	// Update the user's names, then delete.
	user := map[string]any{"id": rsp.User.ID, "name": "renamed"}
	if st, _ := p.credMgmt(ctap2.CredMgmtUpdateUser, map[int]any{2: map[string]any{"type": "public-key", "id": rsp.CredentialID.ID}, 3: user}); st != ctap2.OK {
		t.Fatalf("updateUserInformation: %v", st)
	}
	if c, ok := store.Find(rsp.CredentialID.ID); !ok || c.UserName != "renamed" {
		t.Fatalf("after update: %+v", c)
	}
	if st, _ := p.credMgmt(ctap2.CredMgmtDelete, map[int]any{2: map[string]any{"type": "public-key", "id": first.ID}}); st != ctap2.OK {
		t.Fatalf("deleteCredential: %v", st)
	}
	if st, _ := p.credMgmt(ctap2.CredMgmtDelete, map[int]any{2: map[string]any{"type": "public-key", "id": first.ID}}); st != ctap2.ErrNoCredentials {
		t.Fatalf("deleting it again: %v", st)
	}
	if store.Remaining() != 48 {
		t.Fatalf("remaining %d", store.Remaining())
	}
	// A MAC over other parameters than those sent is refused.
	req := map[int]any{1: ctap2.CredMgmtGetMetadata, 3: 2, 4: p.proto.Authenticate(p.token, []byte{ctap2.CredMgmtEnumerateRPsBegin})}
	if st, _ := call(t, a, ctap2.CmdCredentialMgmt, req); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("MAC over another subcommand: %v", st)
	}
	if st, _ := call(t, a, ctap2.CmdCredentialMgmt, map[int]any{1: ctap2.CredMgmtGetMetadata}); st != ctap2.ErrPUATRequired {
		t.Fatalf("no pinUvAuthParam: %v", st)
	}
	// libfido2 before 1.15 sends the FIDO_2_1_PRE command number.
	req = map[int]any{1: ctap2.CredMgmtGetMetadata, 3: 2, 4: p.proto.Authenticate(p.token, []byte{ctap2.CredMgmtGetMetadata})}
	st, body := call(t, a, ctap2.CmdCredentialMgmtPreview, req)
	if err := cbor.Unmarshal(body, &rsp); st != ctap2.OK || err != nil || *rsp.ExistingCount != 2 {
		t.Fatalf("credentialManagement as 0x41: %v", st)
	}
}

func hashOf(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(b)))
	return len(b), nil
}

// hmacSecretAssert runs getAssertion with the hmac-secret extension and
// returns the decrypted output.
func (p *platform) hmacSecretAssert(rp string, cred []byte, salts []byte, withPIN bool) (ctap2.Status, []byte, byte) {
	p.t.Helper()
	p.agree()
	saltEnc := p.encrypt(salts)
	cdh := sha256.Sum256(append([]byte("hmac"), salts...))
	params := map[int]any{1: rp, 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": cred}},
		4: map[string]any{"hmac-secret": map[int]any{1: p.key, 2: saltEnc, 3: p.proto.Authenticate(p.shared, saltEnc), 4: p.proto.Version()}}}
	shared := p.shared
	if withPIN {
		params[6] = p.proto.Authenticate(p.token, cdh[:])
		params[7] = p.proto.Version()
	}
	st, body := call(p.t, p.a, ctap2.CmdGetAssertion, params)
	if st != ctap2.OK {
		return st, nil, 0
	}
	var rsp ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(body, &rsp); err != nil {
		p.t.Fatal(err)
	}
	var ext struct {
		HMACSecret []byte `cbor:"hmac-secret"`
	}
	if rsp.AuthData[32]&ctap2.FlagED == 0 || cbor.Unmarshal(rsp.AuthData[37:], &ext) != nil {
		p.t.Fatalf("no extension output (flags %#x)", rsp.AuthData[32])
	}
	out, err := p.proto.Decrypt(shared, ext.HMACSecret)
	if err != nil {
		p.t.Fatal(err)
	}
	return st, out, rsp.AuthData[32]
}

func TestHMACSecret(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprint("protocol ", v), func(t *testing.T) { testHMACSecret(t, v) })
	}
}

func testHMACSecret(t *testing.T, v int) {
	a, _ := pinToken(t)
	p := newPlatform(t, a, v)
	if !slices.Contains(info(t, a).Extensions, "hmac-secret") {
		t.Fatal("getInfo does not list hmac-secret")
	}
	st, body := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{6: map[string]any{"hmac-secret": true}}))
	var mc ctap2.MakeCredentialResponse
	if st != ctap2.OK || cbor.Unmarshal(body, &mc) != nil {
		t.Fatalf("makeCredential with hmac-secret: %v", st)
	}
	if !bytes.Contains(mc.AuthData, append([]byte{0xa1, 0x6b}, "hmac-secret\xf5"...)) {
		t.Fatalf("makeCredential: no hmac-secret: true in the extensions")
	}
	n := int(mc.AuthData[53])<<8 | int(mc.AuthData[54])
	cred := mc.AuthData[55 : 55+n]
	salt1, salt2 := bytes.Repeat([]byte{0xa5}, 32), bytes.Repeat([]byte{0x96}, 32)
	_, one, _ := p.hmacSecretAssert("example.org", cred, salt1, false)
	_, again, _ := p.hmacSecretAssert("example.org", cred, salt1, false)
	_, two, _ := p.hmacSecretAssert("example.org", cred, append(bytes.Clone(salt1), salt2...), false)
	if len(one) != 32 || !bytes.Equal(one, again) || len(two) != 64 || !bytes.Equal(two[:32], one) || bytes.Equal(two[32:], one) {
		t.Fatalf("protocol %d: outputs %x %x %x", v, one, again, two)
	}
	// With user verification, another CredRandom (section 12.5).
	p.setPIN(padded("1234"))
	p.getToken("1234", ctap2.PermGetAssertion, "example.org")
	tok := p.token
	p.agree()
	p.token = tok
	st, withUV, flags := p.hmacSecretAssert("example.org", cred, salt1, true)
	if st != ctap2.OK || flags&ctap2.FlagUV == 0 || bytes.Equal(withUV, one) {
		t.Fatalf("protocol %d with UV: %v flags %#x", v, st, flags)
	}
	// A saltAuth that does not verify; salts of the wrong size.
	p.agree()
	saltEnc := p.encrypt(salt1)
	cdh := sha256.Sum256([]byte("bad"))
	bad := map[int]any{1: "example.org", 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": cred}},
		4: map[string]any{"hmac-secret": map[int]any{1: p.key, 2: saltEnc, 3: p.proto.Authenticate(bytes.Repeat([]byte{1}, len(p.shared)), saltEnc), 4: v}}}
	if st, _ := call(t, a, ctap2.CmdGetAssertion, bad); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("bad saltAuth: %v", st)
	}
	short := p.encrypt(bytes.Repeat([]byte{1}, 16))
	bad[4] = map[string]any{"hmac-secret": map[int]any{1: p.key, 2: short, 3: p.proto.Authenticate(p.shared, short), 4: v}}
	if st, _ := call(t, a, ctap2.CmdGetAssertion, bad); st != ctap2.ErrInvalidLength {
		t.Fatalf("16-byte salt: %v", st)
	}
	bad[4] = map[string]any{"hmac-secret": map[int]any{1: p.key, 2: short}}
	if st, _ := call(t, a, ctap2.CmdGetAssertion, bad); st != ctap2.ErrMissingParameter {
		t.Fatalf("no saltAuth: %v", st)
	}
}

// TestHundredDiscoverableCredentials fills a 100-credential store with
// maximum-size user entities (64-byte id, 64-byte names), 20 of them for
// one RP, and lists those through getAssertion/getNextAssertion and
// through credential management.
func TestHundredDiscoverableCredentials(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, Resident: store, PIN: token.TPMPIN{Engine: e}})
	defer a.Close()
	long := func(c byte, i int) string { return fmt.Sprintf("%c%03d", c, i) + strings.Repeat(string(c), 60) }
	for i := range 100 {
		rp := "big.example"
		if i >= 20 {
			rp = fmt.Sprintf("rp%02d.example", i%40)
		}
		uid := bytes.Repeat([]byte{byte(i)}, 64)
		params := makeCredParams(rp, map[int]any{
			3: map[string]any{"id": uid, "name": long('n', i), "displayName": long('d', i)},
			7: map[string]bool{"rk": true},
		})
		if st, _ := call(t, a, ctap2.CmdMakeCredential, params); st != ctap2.OK {
			t.Fatalf("credential %d: %v", i, st)
		}
	}
	if r := info(t, a).RemainingDiscoverable; r == nil || *r != 0 {
		t.Fatalf("remainingDiscoverableCredentials %v, want 0", r)
	}
	full := makeCredParams("new.example", map[int]any{7: map[string]bool{"rk": true}})
	if st, _ := call(t, a, ctap2.CmdMakeCredential, full); st != ctap2.ErrKeyStoreFull {
		t.Fatalf("101st credential: %v", st)
	}
	// The same RP and user id replaces instead of adding, even when full.
	same := makeCredParams("big.example", map[int]any{3: map[string]any{"id": bytes.Repeat([]byte{0}, 64), "name": "renamed"}, 7: map[string]bool{"rk": true}})
	if st, _ := call(t, a, ctap2.CmdMakeCredential, same); st != ctap2.OK {
		t.Fatalf("replacing a credential in a full store: %v", st)
	}
	cdh := sha256.Sum256([]byte("list"))
	st, body := call(t, a, ctap2.CmdGetAssertion, map[int]any{1: "big.example", 2: cdh[:]})
	var first ctap2.GetAssertionResponse
	if st != ctap2.OK || cbor.Unmarshal(body, &first) != nil || first.NumberOfCredentials != 20 {
		t.Fatalf("discoverable getAssertion: %v, %d credentials", st, first.NumberOfCredentials)
	}
	users := map[string]bool{string(first.User.ID): true}
	for range 19 {
		st, body := call(t, a, ctap2.CmdGetNextAssertion, nil)
		var next ctap2.GetAssertionResponse
		if st != ctap2.OK || cbor.Unmarshal(body, &next) != nil || len(next.User.ID) != 64 {
			t.Fatalf("getNextAssertion: %v", st)
		}
		users[string(next.User.ID)] = true
	}
	if len(users) != 20 {
		t.Fatalf("%d distinct users, want 20", len(users))
	}
	if st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("21st getNextAssertion: %v", st)
	}
	p := newPlatform(t, a, 2)
	p.setPIN(padded("1234"))
	p.getToken("1234", ctap2.PermCredMgmt, "")
	st2, meta := p.credMgmt(ctap2.CredMgmtGetMetadata, nil)
	if st2 != ctap2.OK || *meta.ExistingCount != 100 || *meta.MaxRemaining != 0 {
		t.Fatalf("metadata: %v %+v", st2, meta)
	}
	st2, rsp := p.credMgmt(ctap2.CredMgmtEnumerateCredsBegin, map[int]any{1: hashOf("big.example")})
	if st2 != ctap2.OK || *rsp.TotalCredentials != 20 {
		t.Fatalf("enumerateCredentialsBegin: %v", st2)
	}
	names := 0
	for i := 0; i < 20; i++ {
		if i > 0 {
			if st2, rsp = p.credMgmt(ctap2.CredMgmtEnumerateCredsNext, nil); st2 != ctap2.OK {
				t.Fatalf("enumerateCredentialsGetNextCredential %d: %v", i, st2)
			}
		}
		if len(rsp.User.Name) == 64 && len(rsp.User.DisplayName) == 64 {
			names++
		}
	}
	if names != 19 { // one was renamed
		t.Fatalf("%d of 20 credentials kept their 64-byte names", names)
	}
}

// TestResetRemovesThePIN: authenticatorReset wipes the PIN with the
// credentials (a new identity, the PIN index undefined).
func TestResetRemovesThePIN(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, PIN: token.TPMPIN{Engine: e},
		Reset: func() error { _, err := e.Reset(); return err }})
	defer a.Close()
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	if st, _ := call(t, a, ctap2.CmdReset, nil); st != ctap2.OK {
		t.Fatalf("reset: %v", st)
	}
	if info(t, a).Options["clientPin"] {
		t.Fatal("clientPin still true after reset")
	}
	if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.ErrPINNotSet {
		t.Fatalf("old PIN after reset: %v", st)
	}
}

// TestGetNextAssertionWindow: 30 s after the last getAssertion or
// getNextAssertion, the rest of the list is gone (CTAP 2.1 section 6.3).
func TestGetNextAssertionWindow(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Unix(1_800_000_000, 0)
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, Resident: store, Now: func() time.Time { return now }})
	defer a.Close()
	for i := range 3 {
		call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{3: map[string]any{"id": []byte{byte(i)}}, 7: map[string]bool{"rk": true}}))
	}
	cdh := sha256.Sum256([]byte("w"))
	if st, _ := call(t, a, ctap2.CmdGetAssertion, map[int]any{1: "example.org", 2: cdh[:]}); st != ctap2.OK {
		t.Fatal(st)
	}
	now = now.Add(29 * time.Second)
	if st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil); st != ctap2.OK {
		t.Fatalf("getNextAssertion after 29 s: %v", st)
	}
	now = now.Add(31 * time.Second)
	if st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("getNextAssertion 31 s after the last one: %v", st)
	}
}
