package token_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd/fprintdtest"
)

const (
	stUVBlocked ctap2.Status = 0x3c
	stUVInvalid ctap2.Status = 0x3f
)

var (
	match   = []fprintdtest.Status{{Result: "verify-match", Done: true}}
	noMatch = []fprintdtest.Status{{Result: "verify-no-match", Done: true}}
)

// uvRig is a token with built-in UV: the fake fprintd on a real
// dbus-daemon, the retry count in the simulator's TPM.
type uvRig struct {
	t   *testing.T
	sim transport.TPM
	e   *tpm.Engine
	fp  *fprintdtest.Server
	v   *fprintd.Verifier
	a   *token.Authenticator
}

func newUVRig(t *testing.T, fp *fprintdtest.Server, p presence.Prompter) *uvRig {
	t.Helper()
	addr := notifytest.SessionBus(t)
	fp.Serve(t, addr)
	r := &uvRig{t: t, sim: tpmtest.Simulator(t), fp: fp, v: fprintd.New(notifytest.Connect(t, addr), "alice", nil)}
	r.e = tpmtest.Engine(t, r.sim, tpm.Options{})
	r.start(p)
	return r
}

func (r *uvRig) start(p presence.Prompter) {
	if p == nil {
		p = presence.Always{}
	}
	r.a = token.New(token.Config{Keys: token.TPMKeys{Engine: r.e}, Presence: p, PIN: token.TPMPIN{Engine: r.e},
		UV: token.Fprintd{V: r.v}, UVRetries: token.TPMUVRetries{Engine: r.e}, Settings: r.e, Logger: testLogger(r.t)})
	r.t.Cleanup(r.a.Close)
}

// restart is a new daemon on the same TPM and identity.
func (r *uvRig) restart() {
	id := r.e.Identity()
	r.e.Close()
	e, _, err := tpm.New(r.sim, id, tpm.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { e.Close() })
	r.e = e
	r.start(nil)
}

func (r *uvRig) calls(name string) int {
	n := 0
	for _, c := range r.fp.Calls() {
		if c == name {
			n++
		}
	}
	return n
}

func (r *uvRig) released() {
	r.t.Helper()
	if c, rel := r.calls("Claim"), r.calls("Release"); c != rel {
		r.t.Fatalf("%d Claims, %d Releases: %v", c, rel, r.fp.Calls())
	}
}

func (r *uvRig) uvRetries() uint64 {
	r.t.Helper()
	st, body := call(r.t, r.a, ctap2.CmdClientPIN, map[int]any{2: ctap2.PINGetUVRetries})
	var rsp ctap2.ClientPINResponse
	if st != ctap2.OK || cbor.Unmarshal(body, &rsp) != nil || rsp.UVRetries == nil {
		r.t.Fatalf("getUVRetries: %v", st)
	}
	return *rsp.UVRetries
}

// uvToken asks for a pinUvAuthToken by built-in UV (0x06).
func (p *platform) uvToken(perms uint64, rpID string) ctap2.Status {
	p.agree()
	params := map[int]any{1: p.proto.Version(), 2: ctap2.PINGetTokenUsingUVWithPerms, 3: p.key, 9: perms}
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

// assertUV is a getAssertion with options {"uv": true} and no
// pinUvAuthParam: CTAP 2.0-style built-in UV.
func assertUV(t *testing.T, a *token.Authenticator, ctx context.Context, rp string, cred []byte, setStatus func(byte)) (ctap2.Status, byte) {
	t.Helper()
	cdh := sha256.Sum256(fmt.Appendf(nil, "ga uv %s %d", rp, time.Now().UnixNano()))
	b, err := ctap2.Marshal(map[int]any{1: rp, 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": cred}}, 5: map[string]bool{"uv": true}})
	if err != nil {
		t.Fatal(err)
	}
	rsp := a.HandleCBOR(ctx, append([]byte{ctap2.CmdGetAssertion}, b...), setStatus)
	if rsp[0] != 0 {
		return ctap2.Status(rsp[0]), 0
	}
	var ga ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(rsp[1:], &ga); err != nil {
		t.Fatal(err)
	}
	return ctap2.OK, ga.AuthData[32]
}

// getInfo says uv true with a reader and an enrolled finger, false with
// none enrolled, nothing without a reader; the UV flag is set only after
// a match in this request, and a match is the request's presence.
func TestBuiltInUVFlagOnlyOnMatch(t *testing.T) {
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Script: [][]fprintdtest.Status{match, noMatch, match}}, nil)
	i := info(t, r.a)
	if v, ok := i.Options["uv"]; !ok || !v || !i.Options["pinUvAuthToken"] || i.UvModality == nil || *i.UvModality != 2 ||
		i.PreferredPlatformUvAttempts == nil || *i.PreferredPlatformUvAttempts != 1 {
		t.Fatalf("getInfo with an enrolled finger: options %v, modality %v, attempts %v", i.Options, i.UvModality, i.PreferredPlatformUvAttempts)
	}
	st, body := call(t, r.a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{7: map[string]bool{"uv": true}}))
	if st != ctap2.OK {
		t.Fatalf("makeCredential with uv: %v", st)
	}
	var mc ctap2.MakeCredentialResponse
	if err := cbor.Unmarshal(body, &mc); err != nil {
		t.Fatal(err)
	}
	if f := mc.AuthData[32]; f&ctap2.FlagUV == 0 || f&ctap2.FlagUP == 0 {
		t.Fatalf("makeCredential after a match: flags %#x", f)
	}
	cred := credentialIDOf(t, body)
	if st, _ := assertUV(t, r.a, context.Background(), "example.org", cred, nil); st != stUVInvalid {
		t.Fatalf("getAssertion with a finger that does not match: %v", st)
	}
	// Without the uv option the reader is not asked and there is no UV.
	before := r.calls("VerifyStart")
	st, flags := newPlatform(t, r.a, 2).assertNoUV("example.org", cred)
	if st != ctap2.OK || flags&ctap2.FlagUV != 0 || r.calls("VerifyStart") != before {
		t.Fatalf("getAssertion without uv: %v flags %#x", st, flags)
	}
	if st, flags := assertUV(t, r.a, context.Background(), "example.org", cred, nil); st != ctap2.OK || flags&ctap2.FlagUV == 0 {
		t.Fatalf("getAssertion with a match: %v flags %#x", st, flags)
	}
	if n := r.uvRetries(); n != tpm.UVRetries {
		t.Fatalf("retries after a match: %d", n)
	}
	r.released()

	r.fp.SetEnrolled()
	if v, ok := info(t, r.a).Options["uv"]; !ok || v {
		t.Fatalf("getInfo with nothing enrolled: uv %v %v", v, ok)
	}
}

func (p *platform) assertNoUV(rp string, cred []byte) (ctap2.Status, byte) {
	cdh := sha256.Sum256(fmt.Appendf(nil, "ga %s %d", rp, time.Now().UnixNano()))
	st, body := call(p.t, p.a, ctap2.CmdGetAssertion, map[int]any{1: rp, 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": cred}}})
	if st != ctap2.OK {
		return st, 0
	}
	var ga ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(body, &ga); err != nil {
		p.t.Fatal(err)
	}
	return st, ga.AuthData[32]
}

// Five fingers that do not match block built-in UV; the block survives a
// restart (the count is in the TPM); the right PIN unblocks it (CTAP 2.1
// 6.5.5.7.2), and a match then gives a token with the UV flag.
func TestUVRetriesBlockSurviveRestartPINFallback(t *testing.T) {
	script := [][]fprintdtest.Status{}
	for range tpm.UVRetries {
		script = append(script, noMatch)
	}
	script = append(script, match)
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Script: script}, nil)
	p := newPlatform(t, r.a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatalf("setPIN: %v", st)
	}
	for i := range tpm.UVRetries {
		want := stUVInvalid
		if i == tpm.UVRetries-1 {
			want = stUVBlocked
		}
		if st := p.uvToken(ctap2.PermGetAssertion, "example.org"); st != want {
			t.Fatalf("attempt %d: %v, want %v", i+1, st, want)
		}
	}
	starts := r.calls("VerifyStart")
	if st := p.uvToken(ctap2.PermGetAssertion, "example.org"); st != stUVBlocked || r.calls("VerifyStart") != starts {
		t.Fatalf("blocked: %v, reader asked %d times more", st, r.calls("VerifyStart")-starts)
	}
	r.restart()
	p = newPlatform(t, r.a, 2)
	if n := r.uvRetries(); n != 0 {
		t.Fatalf("UV retries after a restart: %d", n)
	}
	if st := p.uvToken(ctap2.PermGetAssertion, "example.org"); st != stUVBlocked {
		t.Fatalf("blocked after a restart: %v", st)
	}
	if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
		t.Fatalf("the PIN as fallback: %v", st)
	}
	if n := r.uvRetries(); n != tpm.UVRetries {
		t.Fatalf("UV retries after the right PIN: %d", n)
	}
	cred := newCredential(t, r.a, "example.org")
	if st := p.uvToken(ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
		t.Fatalf("UV token after the PIN: %v", st)
	}
	if st, flags := p.assertWithToken("example.org", cred, true); st != ctap2.OK || flags&ctap2.FlagUV == 0 {
		t.Fatalf("assertion with the UV token: %v %#x", st, flags)
	}
	r.released()
}

type denyPrompt struct{}

func (denyPrompt) Confirm(ctx context.Context, _ presence.Request) error { return presence.ErrDenied }

type recordPrompt struct {
	mu   sync.Mutex
	reqs []presence.Request
}

func (p *recordPrompt) Confirm(ctx context.Context, req presence.Request) error {
	if !strings.Contains(req.Operation, "fingerprint") {
		return nil
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

// CANCEL (the request's context) and Deny on our prompt end the
// verification: the reader is stopped and released, and no attempt is
// spent. The client hears UPNEEDED meanwhile, and the prompt names the
// site.
func TestUVCancelAndDenyReleaseTheReader(t *testing.T) {
	prompt := &recordPrompt{}
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"}}, prompt) // the reader waits forever
	cred := newCredential(t, r.a, "example.org")
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var statuses []byte
	done := make(chan ctap2.Status)
	go func() {
		st, _ := assertUV(t, r.a, ctx, "example.org", cred, func(b byte) { mu.Lock(); statuses = append(statuses, b); mu.Unlock() })
		done <- st
	}()
	for deadline := time.Now().Add(5 * time.Second); r.calls("VerifyStart") == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reader was never asked")
		}
	}
	cancel()
	if st := <-done; st != ctap2.ErrKeepaliveCancel {
		t.Fatalf("cancelled: %v", st)
	}
	if !slices.Contains(r.fp.Calls(), "VerifyStop") {
		t.Fatalf("no VerifyStop: %v", r.fp.Calls())
	}
	r.released()
	mu.Lock()
	if !slices.Contains(statuses, 2) {
		t.Fatalf("KEEPALIVE statuses %v, want UPNEEDED", statuses)
	}
	mu.Unlock()
	prompt.mu.Lock()
	if len(prompt.reqs) == 0 || prompt.reqs[len(prompt.reqs)-1].RelyingParty != "example.org" {
		t.Fatalf("prompts %+v", prompt.reqs)
	}
	prompt.mu.Unlock()
	if n := r.uvRetries(); n != tpm.UVRetries {
		t.Fatalf("retries after a cancel: %d", n)
	}

	r.start(denyPrompt{})
	if st, _ := assertUV(t, r.a, context.Background(), "example.org", cred, nil); st != ctap2.ErrOperationDenied {
		t.Fatalf("denied: %v", st)
	}
	r.released()
	if n := r.uvRetries(); n != tpm.UVRetries {
		t.Fatalf("retries after Deny: %d", n)
	}
}

// A reader that cannot verify now (busy, gone) is never a failed
// verification: NOT_ALLOWED, and no attempt spent.
func TestUVUnavailableCostsNoRetry(t *testing.T) {
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, ClaimError: "AlreadyInUse"}, nil)
	p := newPlatform(t, r.a, 2)
	if st := p.uvToken(ctap2.PermGetAssertion, "example.org"); st != ctap2.ErrNotAllowed {
		t.Fatalf("reader busy: %v", st)
	}
	if n := r.uvRetries(); n != tpm.UVRetries {
		t.Fatalf("retries after an unavailable reader: %d", n)
	}
}

// Without a reader, getInfo says nothing about uv and the uv option is
// refused as before.
func TestUVNoReader(t *testing.T) {
	r := newUVRig(t, &fprintdtest.Server{NoReader: true}, nil)
	if _, ok := info(t, r.a).Options["uv"]; ok {
		t.Fatal("getInfo without a reader has a uv option")
	}
	if st, _ := call(t, r.a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{7: map[string]bool{"uv": true}})); st != ctap2.ErrInvalidOption {
		t.Fatalf("makeCredential with uv and no reader: %v", st)
	}
}

// A fingerprint satisfies credProtect 3 (userVerificationRequired) as a
// PIN does: the credential signs after a match, not without UV.
func TestFingerprintSatisfiesCredProtect3(t *testing.T) {
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Script: [][]fprintdtest.Status{match, match}}, nil)
	st, body := call(t, r.a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{6: map[string]any{"credProtect": 3}, 7: map[string]bool{"uv": true}}))
	if st != ctap2.OK {
		t.Fatalf("makeCredential credProtect 3 with a fingerprint: %v", st)
	}
	cred := credentialIDOf(t, body)
	if st, _ := newPlatform(t, r.a, 2).assertNoUV("example.org", cred); st != ctap2.ErrNoCredentials {
		t.Fatalf("credProtect 3 without UV: %v, want NO_CREDENTIALS", st)
	}
	if st, flags := assertUV(t, r.a, context.Background(), "example.org", cred, nil); st != ctap2.OK || flags&ctap2.FlagUV == 0 {
		t.Fatalf("credProtect 3 with a fingerprint: %v flags %#x", st, flags)
	}
}

// onlyFingerprint denies every prompt but the one shown while the reader
// waits, which it leaves open.
type onlyFingerprint struct{}

func (onlyFingerprint) Confirm(ctx context.Context, req presence.Request) error {
	if strings.Contains(req.Operation, "fingerprint") {
		<-ctx.Done()
		return ctx.Err()
	}
	return presence.ErrDenied
}

// A pinUvAuthToken from built-in UV carries the user present flag (CTAP
// 2.1 6.5.5.7.3: the finger is evidence of user interaction): the next
// makeCredential signs with UP and UV without asking again, once; a PIN
// token does not, and asks.
func TestUVTokenCarriesPresenceOnce(t *testing.T) {
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Script: [][]fprintdtest.Status{match}}, onlyFingerprint{})
	p := newPlatform(t, r.a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatalf("setPIN: %v", st)
	}
	if st := p.uvToken(ctap2.PermMakeCredential, "example.org"); st != ctap2.OK {
		t.Fatalf("UV token: %v", st)
	}
	mc := func() (ctap2.Status, byte) {
		params := makeCredParams("example.org", map[int]any{8: p.proto.Authenticate(p.token, hashOf("client data example.org")), 9: p.proto.Version()})
		st, body := call(t, r.a, ctap2.CmdMakeCredential, params)
		if st != ctap2.OK {
			return st, 0
		}
		var rsp ctap2.MakeCredentialResponse
		if err := cbor.Unmarshal(body, &rsp); err != nil {
			t.Fatal(err)
		}
		return st, rsp.AuthData[32]
	}
	if st, flags := mc(); st != ctap2.OK || flags&(ctap2.FlagUP|ctap2.FlagUV) != ctap2.FlagUP|ctap2.FlagUV {
		t.Fatalf("makeCredential with the UV token: %v flags %#x", st, flags)
	}
	if st, _ := mc(); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("the UV token again: %v, want PIN_AUTH_INVALID (used up)", st)
	}
	if st := p.getToken("1234", ctap2.PermMakeCredential, "example.org"); st != ctap2.OK {
		t.Fatalf("PIN token: %v", st)
	}
	if st, _ := mc(); st != ctap2.ErrOperationDenied {
		t.Fatalf("makeCredential with a PIN token: %v, want the prompt asked (and denied)", st)
	}
}

// A reader that goes away while it waits (unplugged, suspended) ends the
// verification with NOT_ALLOWED, costs no attempt, and is released.
func TestUVReaderGoneMidVerifyCostsNoRetry(t *testing.T) {
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"},
		Script: [][]fprintdtest.Status{{{Result: "verify-disconnected", Done: true}}}}, nil)
	cred := newCredential(t, r.a, "example.org")
	if st, _ := assertUV(t, r.a, context.Background(), "example.org", cred, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("reader gone: %v", st)
	}
	if n := r.uvRetries(); n != tpm.UVRetries {
		t.Fatalf("retries after the reader went: %d", n)
	}
	r.released()
}

// lockDuringFingerprint locks the token while the reader waits.
type lockDuringFingerprint struct{ a **token.Authenticator }

func (l lockDuringFingerprint) Confirm(ctx context.Context, req presence.Request) error {
	if strings.Contains(req.Operation, "fingerprint") {
		(*l.a).Lock()
	}
	return nil
}

// A token locked while the reader waited (the screen locked) signs
// nothing, even after a matching finger.
func TestUVLockedWhileWaiting(t *testing.T) {
	var a *token.Authenticator
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Script: [][]fprintdtest.Status{match}}, lockDuringFingerprint{&a})
	a = r.a
	st, _ := call(t, r.a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{7: map[string]bool{"uv": true}}))
	if st != ctap2.ErrOperationDenied {
		t.Fatalf("makeCredential locked during the fingerprint: %v", st)
	}
	r.released()
}

// A key with built-in UV and no PIN configures itself with a token from
// the finger (acfg), as libfido2's fido2-token -S -u asks for one.
func TestUVTokenForAuthenticatorConfig(t *testing.T) {
	r := newUVRig(t, &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Script: [][]fprintdtest.Status{match}}, nil)
	p := newPlatform(t, r.a, 2)
	if st := p.uvToken(ctap2.PermAuthnrConfig, ""); st != ctap2.OK {
		t.Fatalf("UV token with acfg: %v", st)
	}
	if st := p.config(ctap2.ConfigToggleAlwaysUV, nil); st != ctap2.OK {
		t.Fatalf("toggleAlwaysUv with the UV token: %v", st)
	}
	if i := info(t, r.a); !i.Options["alwaysUv"] {
		t.Fatal("alwaysUv not on")
	}
}
