package u2fhost_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/tokentest"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid/hidtest"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// fake is a ctaphid.Handler that records the U2F messages it gets and
// answers with the responses queued in answers, last one repeated.
type fake struct {
	mu      sync.Mutex
	got     [][]byte
	answers [][]byte
}

func (f *fake) Handle(_ context.Context, req ctaphid.Request) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, append([]byte(nil), req.Payload...))
	rsp := f.answers[0]
	if len(f.answers) > 1 {
		f.answers = f.answers[1:]
	}
	return rsp
}

func (f *fake) requests() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got
}

// serve runs h behind a CTAPHID server on an in-memory pipe and returns a
// client with a channel.
func serve(t *testing.T, h ctaphid.Handler) *ctaphid.Client {
	t.Helper()
	dev, host := hidtest.NewPipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctaphid.NewServer(dev, h, ctaphid.Options{}).Serve(ctx)
	}()
	t.Cleanup(func() { cancel(); host.Close(); <-done })
	c := ctaphid.NewClient(host)
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func sw(data []byte, sw uint16) []byte {
	return binary.BigEndian.AppendUint16(append([]byte(nil), data...), sw)
}

func fill(b byte) (a [32]byte) {
	for i := range a {
		a[i] = b
	}
	return a
}

// TestAPDUBytes pins the request encoding to what browsers send: CLA 0,
// extended Lc, extended Le 0; and checks the token's parser agrees.
func TestAPDUBytes(t *testing.T) {
	f := &fake{answers: [][]byte{sw(nil, 0x6a80)}}
	c := serve(t, f)
	ctx := context.Background()
	chal, app := fill(0xc1), fill(0xa1)
	handle := []byte{9, 8, 7}

	u2fhost.Register(ctx, c, chal, app)
	u2fhost.Authenticate(ctx, c, chal, app, handle, u2fhost.CheckOnly)

	wantReg := append([]byte{0, 0x01, 0x03, 0, 0, 0, 64}, append(append(chal[:], app[:]...), 0, 0)...)
	wantAuth := append([]byte{0, 0x02, 0x07, 0, 0, 0, 68}, append(append(append(chal[:], app[:]...), 3, 9, 8, 7), 0, 0)...)
	got := f.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	for i, want := range [][]byte{wantReg, wantAuth} {
		if !bytes.Equal(got[i], want) {
			t.Errorf("request %d:\n got % x\nwant % x", i, got[i], want)
		}
		a, err := token.ParseAPDU(got[i])
		if err != nil {
			t.Fatalf("token cannot parse request %d: %v", i, err)
		}
		if a.Le != 65536 || !bytes.Equal(a.Data, want[7:len(want)-2]) {
			t.Errorf("token parsed request %d as Le %d data %x", i, a.Le, a.Data)
		}
	}
}

func TestPollsWhileKeyWaitsForTouch(t *testing.T) {
	defer func(d time.Duration) { u2fhost.PollInterval = d }(u2fhost.PollInterval)
	u2fhost.PollInterval = time.Millisecond
	sig := []byte{0x30, 6, 2, 1, 1, 2, 1, 1}
	f := &fake{answers: [][]byte{sw(nil, 0x6985), sw(nil, 0x6985), sw(append([]byte{1, 0, 0, 1, 2}, sig...), 0x9000)}}
	c := serve(t, f)
	a, err := u2fhost.Authenticate(context.Background(), c, fill(1), fill(2), []byte{1}, u2fhost.EnforcePresence)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d requests, want 3 (two polls, then the answer)", n)
	}
	if a.UserPresence != 1 || a.Counter != 0x102 || !bytes.Equal(a.FlagsAndCounter, []byte{1, 0, 0, 1, 2}) || !bytes.Equal(a.Signature, sig) {
		t.Errorf("parsed %+v", a)
	}
}

func TestPollingEndsWithContext(t *testing.T) {
	f := &fake{answers: [][]byte{sw(nil, 0x6985)}}
	c := serve(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer cancel()
	_, err := u2fhost.Register(ctx, c, fill(1), fill(2))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
	// At the default 100 ms, a 350 ms wait is about four requests.
	if n := len(f.requests()); n < 2 || n > 6 {
		t.Errorf("%d requests in 350 ms at a 100 ms poll interval", n)
	}
}

func TestStatusWords(t *testing.T) {
	for _, tc := range []struct {
		control byte
		sw      uint16
		polls   int
	}{
		{u2fhost.CheckOnly, 0x6985, 1}, // "the handle is mine": an answer, not a wait
		{u2fhost.DontEnforcePresence, 0x6985, 1},
		{u2fhost.EnforcePresence, 0x6a80, 1},
		{u2fhost.EnforcePresence, 0x6700, 1},
	} {
		f := &fake{answers: [][]byte{sw(nil, tc.sw)}}
		c := serve(t, f)
		_, err := u2fhost.Authenticate(context.Background(), c, fill(1), fill(2), []byte{1}, tc.control)
		var se *u2fhost.StatusError
		if !errors.As(err, &se) || se.SW != tc.sw {
			t.Errorf("control %#x, SW %04x: got %v", tc.control, tc.sw, err)
		}
		if n := len(f.requests()); n != tc.polls {
			t.Errorf("control %#x, SW %04x: %d requests", tc.control, tc.sw, n)
		}
	}
}

func TestMalformedResponses(t *testing.T) {
	for name, rsp := range map[string][]byte{
		"no status word":      {0x90},
		"short authenticate":  sw([]byte{1, 0, 0, 0, 1}, 0x9000),
		"empty authenticate":  sw(nil, 0x9000),
		"one byte and status": sw([]byte{1}, 0x9000),
	} {
		c := serve(t, &fake{answers: [][]byte{rsp}})
		if a, err := u2fhost.Authenticate(context.Background(), c, fill(1), fill(2), []byte{1}, u2fhost.EnforcePresence); err == nil {
			t.Errorf("%s: accepted as %+v", name, a)
		}
	}
	c := serve(t, &fake{answers: [][]byte{sw(nil, 0x9000)}})
	for _, h := range [][]byte{nil, make([]byte, 256)} {
		if _, err := u2fhost.Authenticate(context.Background(), c, fill(1), fill(2), h, u2fhost.EnforcePresence); err == nil {
			t.Errorf("%d-byte key handle accepted", len(h))
		}
	}
}

// registerOnToken registers on the real token on the simulator and checks
// the attestation signature the way U2F servers do.
func registerOnToken(t *testing.T) (*ctaphid.Client, *u2fhost.Registration, [32]byte) {
	t.Helper()
	c := tokentest.Serve(t, tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{}), nil)
	app := sha256.Sum256([]byte("https://example.org"))
	chal := fill(0x5a)
	reg, err := u2fhost.Register(context.Background(), c, chal, app)
	if err != nil {
		t.Fatal(err)
	}
	// U2F v1.2 section 4.3: the attestation signature covers
	// 0x00 | app | challenge | key handle | public key.
	msg := append([]byte{0}, app[:]...)
	msg = append(append(append(msg, chal[:]...), reg.KeyHandle...), reg.PublicKeyRaw...)
	cert, err := x509.ParseCertificate(reg.CertificateDER)
	if err != nil {
		t.Fatalf("attestation certificate: %v", err)
	}
	attKey, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("attestation key is %T", cert.PublicKey)
	}
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(attKey, h[:], reg.Signature) {
		t.Fatal("registration signature does not verify with the certificate's key")
	}
	return c, reg, app
}

func TestAgainstTokenOnSimulator(t *testing.T) {
	c, reg, app := registerOnToken(t)
	ctx := context.Background()
	if raw, err := reg.PublicKey.Bytes(); err != nil || !bytes.Equal(raw, reg.PublicKeyRaw) {
		t.Errorf("PublicKey and PublicKeyRaw differ (%v)", err)
	}
	var last uint32
	for i := range 2 {
		chal := fill(byte(i))
		a, err := u2fhost.Authenticate(ctx, c, chal, app, reg.KeyHandle, u2fhost.EnforcePresence)
		if err != nil {
			t.Fatal(err)
		}
		// Section 5.4: app | presence | counter | challenge.
		msg := append(append(append([]byte(nil), app[:]...), a.FlagsAndCounter...), chal[:]...)
		h := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(reg.PublicKey, h[:], a.Signature) {
			t.Fatalf("authentication %d: signature does not verify", i)
		}
		if a.UserPresence&1 == 0 {
			t.Errorf("authentication %d: presence bit clear", i)
		}
		if i > 0 && a.Counter <= last {
			t.Errorf("counter %d after %d", a.Counter, last)
		}
		last = a.Counter
	}
	var se *u2fhost.StatusError
	if _, err := u2fhost.Authenticate(ctx, c, fill(0), app, reg.KeyHandle, u2fhost.CheckOnly); !errors.As(err, &se) || se.SW != u2fhost.SWConditionsNotSatisfied {
		t.Errorf("check-only with our handle: %v, want 6985", err)
	}
	if _, err := u2fhost.Authenticate(ctx, c, fill(0), fill(0xee), reg.KeyHandle, u2fhost.EnforcePresence); !errors.As(err, &se) || se.SW != u2fhost.SWWrongData {
		t.Errorf("handle for another app: %v, want 6A80", err)
	}
}

// registrationBody rebuilds a REGISTER response body from its parts.
func registrationBody(r *u2fhost.Registration) []byte {
	b := append([]byte{5}, r.PublicKeyRaw...)
	b = append(append(b, byte(len(r.KeyHandle))), r.KeyHandle...)
	return append(append(b, r.CertificateDER...), r.Signature...)
}

func TestParseRegistrationRejectsDamage(t *testing.T) {
	_, reg, _ := registerOnToken(t)
	good := registrationBody(reg)
	if _, err := u2fhost.ParseRegistration(good); err != nil {
		t.Fatalf("well-formed body: %v", err)
	}
	certAt := 67 + len(reg.KeyHandle)
	damage := map[string]func([]byte) []byte{
		"reserved byte":      func(b []byte) []byte { b[0] = 4; return b },
		"compressed point":   func(b []byte) []byte { b[1] = 2; return b },
		"point off curve":    func(b []byte) []byte { b[40] ^= 1; return b },
		"handle cut":         func(b []byte) []byte { return b[:certAt-1] },
		"empty handle":       func(b []byte) []byte { b[66] = 0; return b },
		"not a SEQUENCE":     func(b []byte) []byte { b[certAt] = 0x31; return b },
		"certificate cut":    func(b []byte) []byte { return b[:certAt+len(reg.CertificateDER)-1] },
		"no signature":       func(b []byte) []byte { return b[:certAt+len(reg.CertificateDER)] },
		"indefinite length":  func(b []byte) []byte { b[certAt+1] = 0x80; return b },
		"only a header":      func(b []byte) []byte { return b[:66] },
		"certificate header": func(b []byte) []byte { return b[:certAt+1] },
	}
	for name, f := range damage {
		b := f(append([]byte(nil), good...))
		if r, err := u2fhost.ParseRegistration(b); err == nil {
			t.Errorf("%s: accepted (certificate %d bytes, signature %d bytes)", name, len(r.CertificateDER), len(r.Signature))
		}
	}
}

// FuzzParseRegistration checks that no input panics the parser and that
// whatever it accepts is split without losing or inventing bytes.
func FuzzParseRegistration(f *testing.F) {
	pub := append([]byte{4}, make([]byte, 64)...)
	f.Add(append(append(append([]byte{5}, pub...), 1, 7), 0x30, 0x82, 0, 1, 0, 0x30, 1))
	f.Add([]byte{5})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := u2fhost.ParseRegistration(b)
		if err != nil {
			return
		}
		if !bytes.Equal(registrationBody(r), b) || len(r.Signature) == 0 {
			t.Fatalf("parsed %x into inconsistent parts", b)
		}
	})
}
