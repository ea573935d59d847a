package token_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func newToken(t *testing.T, p presence.Prompter) (*token.Authenticator, *tpm.Meter) {
	t.Helper()
	meter := tpm.NewMeter(tpmtest.Simulator(t))
	e := tpmtest.Engine(t, meter, tpm.Options{})
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: p, PromptGrace: 50 * time.Millisecond})
	t.Cleanup(a.Close)
	return a, meter
}

func apdu(ins, p1 byte, data []byte, ext bool) []byte {
	return (&token.APDU{INS: ins, P1: p1, Data: data}).Encode(ext)
}

func sw(rsp []byte) uint16 {
	if len(rsp) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(rsp[len(rsp)-2:])
}

type registration struct {
	pub    *ecdsa.PublicKey
	handle []byte
}

func register(t *testing.T, a *token.Authenticator, app, chal [32]byte) registration {
	t.Helper()
	rsp := a.HandleAPDU(context.Background(), apdu(0x01, 0x03, append(chal[:], app[:]...), false))
	if sw(rsp) != token.SWNoError {
		t.Fatalf("register: SW %04X", sw(rsp))
	}
	body := rsp[:len(rsp)-2]
	if body[0] != 0x05 {
		t.Fatalf("reserved byte %#x", body[0])
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), body[1:66])
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	l := int(body[66])
	handle := body[67 : 67+l]
	rest := body[67+l:]
	cert, err := x509.ParseCertificate(rest)
	if err != nil {
		// the certificate is followed by the signature; find its end
		var raw asn1Seq
		n, perr := raw.length(rest)
		if perr != nil {
			t.Fatalf("certificate: %v", perr)
		}
		if cert, err = x509.ParseCertificate(rest[:n]); err != nil {
			t.Fatalf("certificate: %v", err)
		}
	}
	sig := rest[len(cert.Raw):]
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("attestation certificate is not for the credential key (must be self-attestation)")
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Fatalf("certificate is not self-signed: %v", err)
	}
	msg := append([]byte{0}, app[:]...)
	msg = append(msg, chal[:]...)
	msg = append(msg, handle...)
	msg = append(msg, body[1:66]...)
	d := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pub, d[:], sig) {
		t.Fatal("registration signature does not verify")
	}
	return registration{pub: pub, handle: append([]byte(nil), handle...)}
}

type asn1Seq struct{}

func (asn1Seq) length(b []byte) (int, error) {
	if len(b) < 2 || b[0] != 0x30 {
		return 0, errors.New("not a SEQUENCE")
	}
	if b[1] < 0x80 {
		return 2 + int(b[1]), nil
	}
	n := int(b[1] & 0x7f)
	if n > 3 || len(b) < 2+n {
		return 0, errors.New("bad length")
	}
	l := 0
	for _, c := range b[2 : 2+n] {
		l = l<<8 | int(c)
	}
	return 2 + n + l, nil
}

func authenticate(a *token.Authenticator, ctl byte, app, chal [32]byte, handle []byte, ext bool) []byte {
	data := append(append(append(chal[:], app[:]...), byte(len(handle))), handle...)
	return a.HandleAPDU(context.Background(), apdu(0x02, ctl, data, ext))
}

func verifyAssertion(t *testing.T, r registration, app, chal [32]byte, rsp []byte, wantUP byte) uint32 {
	t.Helper()
	if sw(rsp) != token.SWNoError {
		t.Fatalf("authenticate: SW %04X", sw(rsp))
	}
	body := rsp[:len(rsp)-2]
	if body[0] != wantUP {
		t.Fatalf("user presence byte %d, want %d", body[0], wantUP)
	}
	msg := append(append(app[:], body[:5]...), chal[:]...)
	d := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(r.pub, d[:], body[5:]) {
		t.Fatal("assertion signature does not verify")
	}
	return binary.BigEndian.Uint32(body[1:5])
}

func TestRegisterAuthenticate(t *testing.T) {
	a, meter := newToken(t, presence.Always{})
	app, chal := sha256.Sum256([]byte("https://example.org")), sha256.Sum256([]byte("c1"))
	r := register(t, a, app, chal)
	if len(r.handle) > 255 {
		t.Fatalf("key handle %d bytes", len(r.handle))
	}
	var last uint32
	for i, ext := range []bool{false, true, false} {
		chal := sha256.Sum256([]byte{byte(i)})
		before := meter.Snapshot()
		c := verifyAssertion(t, r, app, chal, authenticate(a, 0x03, app, chal, r.handle, ext), 1)
		if c <= last {
			t.Fatalf("counter %d after %d", c, last)
		}
		last = c
		if i > 0 {
			t.Logf("warm authenticate: %s", meter.Snapshot().Sub(before))
		}
	}
	// Don't-enforce: signed without presence, UP bit clear.
	verifyAssertion(t, r, app, chal, authenticate(a, 0x08, app, chal, r.handle, false), 0)
	// Check-only: 0x6985 for ours, 0x6A80 for another appID.
	if got := sw(authenticate(a, 0x07, app, chal, r.handle, false)); got != token.SWConditionsNotSatisfied {
		t.Errorf("check-only ours: SW %04X, want 6985", got)
	}
	other := sha256.Sum256([]byte("https://evil.example"))
	if got := sw(authenticate(a, 0x07, other, chal, r.handle, false)); got != token.SWWrongData {
		t.Errorf("check-only other appID: SW %04X, want 6A80", got)
	}
	if got := sw(authenticate(a, 0x03, other, chal, r.handle, false)); got != token.SWWrongData {
		t.Errorf("authenticate other appID: SW %04X, want 6A80", got)
	}
}

func TestBadRequests(t *testing.T) {
	a, _ := newToken(t, presence.Always{})
	app, chal := sha256.Sum256([]byte("https://example.org")), sha256.Sum256([]byte("c"))
	r := register(t, a, app, chal)
	flipped := append([]byte(nil), r.handle...)
	flipped[len(flipped)-1] ^= 1
	data := append(append(chal[:], app[:]...), byte(len(r.handle)))
	cases := []struct {
		name string
		msg  []byte
		want uint16
	}{
		{"empty", nil, token.SWWrongLength},
		{"three bytes", []byte{0, 1, 3}, token.SWWrongLength},
		{"CLA", []byte{0x80, 0x03, 0, 0}, token.SWClaNotSupported},
		{"INS", []byte{0, 0x42, 0, 0}, token.SWInsNotSupported},
		{"version", []byte{0, 0x03, 0, 0}, token.SWNoError},
		{"version extended Le", []byte{0, 0x03, 0, 0, 0, 0, 0}, token.SWNoError},
		{"version as python-fido2 sends it (Lc 0, Le)", []byte{0, 0x03, 0, 0, 0, 0, 0, 0, 0}, token.SWNoError},
		{"version with data", apdu(0x03, 0, []byte{1}, false), token.SWWrongLength},
		{"short Lc mismatch", []byte{0, 0x01, 0, 0, 64, 1, 2}, token.SWWrongLength},
		{"extended Lc mismatch", []byte{0, 0x01, 0, 0, 0, 0, 64, 1}, token.SWWrongLength},
		{"register short data", apdu(0x01, 0, make([]byte, 63), false), token.SWWrongLength},
		{"authenticate short", apdu(0x02, 3, make([]byte, 64), false), token.SWWrongLength},
		{"handle length mismatch", apdu(0x02, 3, append(append([]byte{}, data...), r.handle[:10]...), false), token.SWWrongLength},
		{"flipped handle", authenticateAPDU(app, chal, flipped, 0x03), token.SWWrongData},
		{"zero handle", authenticateAPDU(app, chal, nil, 0x03), token.SWWrongData},
		{"forged handle", authenticateAPDU(app, chal, bytes.Repeat([]byte{1}, 251), 0x03), token.SWWrongData},
		{"bad control byte", authenticateAPDU(app, chal, r.handle, 0x05), token.SWIncorrectP1P2},
	}
	for _, c := range cases {
		rsp := a.HandleAPDU(context.Background(), c.msg)
		if got := sw(rsp); got != c.want {
			t.Errorf("%s: SW %04X, want %04X", c.name, got, c.want)
		}
		if c.want != token.SWNoError && len(rsp) != 2 {
			t.Errorf("%s: error response carries %d bytes of data", c.name, len(rsp)-2)
		}
	}
	if rsp := a.HandleAPDU(context.Background(), []byte{0, 0x03, 0, 0}); string(rsp[:len(rsp)-2]) != "U2F_V2" {
		t.Errorf("VERSION = %q", rsp)
	}
}

func authenticateAPDU(app, chal [32]byte, handle []byte, ctl byte) []byte {
	data := append(append(append(chal[:], app[:]...), byte(len(handle))), handle...)
	return apdu(0x02, ctl, data, false)
}

// scripted is a prompter whose answers the test gives.
type scripted struct {
	mu      sync.Mutex
	asked   []presence.Request
	answers chan error
}

func (s *scripted) Confirm(ctx context.Context, req presence.Request) error {
	s.mu.Lock()
	s.asked = append(s.asked, req)
	s.mu.Unlock()
	select {
	case err := <-s.answers:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.asked)
}

func TestPresencePolling(t *testing.T) {
	s := &scripted{answers: make(chan error, 1)}
	a, _ := newToken(t, s)
	app, chal := sha256.Sum256([]byte("https://example.org")), sha256.Sum256([]byte("c"))
	reg := append(chal[:], app[:]...)

	// The client polls: "presence required" until the user answers, and
	// only one prompt for all the polls of one request.
	for range 3 {
		if got := sw(a.HandleAPDU(context.Background(), apdu(0x01, 0, reg, false))); got != token.SWConditionsNotSatisfied {
			t.Fatalf("before approval: SW %04X, want 6985", got)
		}
	}
	// Another request meanwhile does not stack a second prompt.
	other := sha256.Sum256([]byte("other"))
	if got := sw(a.HandleAPDU(context.Background(), apdu(0x01, 0, append(other[:], app[:]...), false))); got != token.SWConditionsNotSatisfied {
		t.Fatalf("second request: SW %04X", got)
	}
	if n := s.count(); n != 1 {
		t.Fatalf("%d prompts, want 1", n)
	}
	if s.asked[0].Operation != "register" {
		t.Errorf("prompt operation %q", s.asked[0].Operation)
	}
	s.answers <- nil
	deadline := time.Now().Add(5 * time.Second)
	for sw(a.HandleAPDU(context.Background(), apdu(0x01, 0, reg, false))) != token.SWNoError {
		if time.Now().After(deadline) {
			t.Fatal("approved registration never went through")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The approval was used up: the same request asks again.
	if got := sw(a.HandleAPDU(context.Background(), apdu(0x01, 0, reg, false))); got != token.SWConditionsNotSatisfied {
		t.Fatalf("approval reused: SW %04X", got)
	}
	if n := s.count(); n != 2 {
		t.Fatalf("%d prompts, want 2", n)
	}
	// A denial is not an approval, and polling after it does not re-prompt at once.
	s.answers <- presence.ErrDenied
	time.Sleep(100 * time.Millisecond)
	for range 3 {
		if got := sw(a.HandleAPDU(context.Background(), apdu(0x01, 0, reg, false))); got != token.SWConditionsNotSatisfied {
			t.Fatalf("after denial: SW %04X", got)
		}
	}
	if n := s.count(); n != 2 {
		t.Fatalf("%d prompts after denial, want 2", n)
	}
}

func TestNoPromptForForeignHandle(t *testing.T) {
	s := &scripted{answers: make(chan error, 1)}
	a, _ := newToken(t, s)
	app, chal := sha256.Sum256([]byte("https://example.org")), sha256.Sum256([]byte("c"))
	if got := sw(a.HandleAPDU(context.Background(), authenticateAPDU(app, chal, bytes.Repeat([]byte{7}, 100), 0x03))); got != token.SWWrongData {
		t.Fatalf("forged handle: SW %04X, want 6A80", got)
	}
	// A handle whose private blob was altered passes every check but the
	// TPM's: it must still never reach the user.
	s.answers <- nil
	r := register(t, a, app, chal)
	flipped := append([]byte(nil), r.handle...)
	flipped[len(flipped)-1] ^= 1
	prompts := s.count()
	if got := sw(a.HandleAPDU(context.Background(), authenticateAPDU(app, chal, flipped, 0x03))); got != token.SWWrongData {
		t.Fatalf("tampered private blob: SW %04X, want 6A80", got)
	}
	if s.count() != prompts {
		t.Fatal("prompted the user for a key handle that is not ours")
	}
}

// memoryReplay is a ReplayGuard without a window, for testing the token's
// use of it; package replay tests the real store.
type memoryReplay struct {
	mu   sync.Mutex
	seen map[[32]byte]bool
}

var errReplayed = errors.New("replayed")

func (m *memoryReplay) Check(k [32]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[k] {
		return errReplayed
	}
	return nil
}

func (m *memoryReplay) Record(k [32]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen[k] = true
	return nil
}

func TestReplayedAuthenticateRefused(t *testing.T) {
	meter := tpm.NewMeter(tpmtest.Simulator(t))
	e := tpmtest.Engine(t, meter, tpm.Options{})
	s := &scripted{answers: make(chan error, 4)}
	guard := &memoryReplay{seen: map[[32]byte]bool{}}
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: s, Replay: guard, PromptGrace: 50 * time.Millisecond})
	defer a.Close()
	app, chal := sha256.Sum256([]byte("https://example.org")), sha256.Sum256([]byte("c"))
	s.answers <- nil
	r := register(t, a, app, chal)
	if len(guard.seen) != 0 {
		t.Fatal("a registration was recorded as a signed request")
	}
	// Polling: the first answer is 0x6985 until approved; nothing recorded.
	if got := sw(authenticate(a, 0x03, app, chal, r.handle, false)); got != token.SWConditionsNotSatisfied {
		t.Fatalf("first poll: SW %04X", got)
	}
	if len(guard.seen) != 0 {
		t.Fatal("a poll without a signature was recorded")
	}
	// Check-only probes are not signatures either.
	authenticate(a, 0x07, app, chal, r.handle, false)
	s.answers <- nil
	time.Sleep(100 * time.Millisecond)
	verifyAssertion(t, r, app, chal, authenticate(a, 0x03, app, chal, r.handle, false), 1)
	prompts := s.count()
	// The same request again: refused, without a prompt and without a TPM command.
	before := meter.Snapshot()
	if got := sw(authenticate(a, 0x03, app, chal, r.handle, false)); got != token.SWWrongData {
		t.Fatalf("replay: SW %04X, want 6A80", got)
	}
	if n := meter.Snapshot().Sub(before).Total(); n != 0 || s.count() != prompts {
		t.Fatalf("replay cost %d TPM commands and %d prompts", n, s.count()-prompts)
	}
	// The same challenge for another appID or as a no-presence request is a different request.
	verifyAssertion(t, r, app, chal, authenticate(a, 0x08, app, chal, r.handle, false), 0)
	other := sha256.Sum256([]byte("c2"))
	s.answers <- nil
	time.Sleep(10 * time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rsp := authenticate(a, 0x03, app, other, r.handle, false)
		if sw(rsp) == token.SWNoError {
			verifyAssertion(t, r, app, other, rsp, 1)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("distinct challenge never signed: SW %04X", sw(rsp))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLockedTokenRefusesWithoutPrompting(t *testing.T) {
	s := &scripted{answers: make(chan error, 4)}
	a, _ := newToken(t, s)
	app, chal := sha256.Sum256([]byte("https://example.org")), sha256.Sum256([]byte("c"))
	s.answers <- nil
	r := register(t, a, app, chal)
	prompts := s.count()
	a.Lock()
	if !a.Locked() {
		t.Fatal("not locked")
	}
	if got := sw(authenticate(a, 0x03, app, chal, r.handle, false)); got != token.SWConditionsNotSatisfied {
		t.Fatalf("locked authenticate: SW %04X, want 6985", got)
	}
	if got := sw(a.HandleAPDU(context.Background(), apdu(0x01, 0x03, append(chal[:], app[:]...), false))); got != token.SWConditionsNotSatisfied {
		t.Fatalf("locked register: SW %04X, want 6985", got)
	}
	if s.count() != prompts {
		t.Fatal("a locked token prompted the user")
	}
	// Check-only needs no presence and still answers.
	if got := sw(authenticate(a, 0x07, app, chal, r.handle, false)); got != token.SWConditionsNotSatisfied {
		t.Fatalf("locked check-only: SW %04X", got)
	}
	a.Unlock()
	s.answers <- nil
	time.Sleep(10 * time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rsp := authenticate(a, 0x03, app, chal, r.handle, false)
		if sw(rsp) == token.SWNoError {
			verifyAssertion(t, r, app, chal, rsp, 1)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after unlock: SW %04X", sw(rsp))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
