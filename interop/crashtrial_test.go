package interop

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// trials is how many crash trials to run: CRASH_TRIALS, else def.
// `make reliability` runs hundreds; `make test` a few.
func trials(def int) int {
	if n, err := strconv.Atoi(os.Getenv("CRASH_TRIALS")); err == nil && n > 0 {
		return n
	}
	return def
}

// pinToken gets a pinUvAuthToken (protocol 2) with perms for rpID.
func pinToken(ctx context.Context, c *ctaphid.Client, p string, perms uint64, rpID string) ([]byte, ctap2.Status, error) {
	proto, _ := pin.ProtocolByVersion(2)
	st, rsp, err := clientPIN(ctx, c, map[int]any{1: 2, 2: ctap2.PINGetKeyAgreement})
	if err != nil || st != ctap2.OK {
		return nil, st, err
	}
	ours, _ := pin.NewKeyAgreement()
	shared, err := ours.SharedSecret(proto, rsp.KeyAgreement.X, rsp.KeyAgreement.Y)
	if err != nil {
		return nil, 0, err
	}
	x, y := ours.PublicXY()
	h := sha256.Sum256([]byte(p))
	enc, _ := proto.Encrypt(shared, h[:16])
	st, rsp, err = clientPIN(ctx, c, map[int]any{1: 2, 2: ctap2.PINGetTokenUsingPINWithPerms,
		3: map[int]any{1: 2, 3: -25, -1: 1, -2: x, -3: y}, 6: enc, 9: perms, 10: rpID})
	if err != nil || st != ctap2.OK {
		return nil, st, err
	}
	tok, err := proto.Decrypt(shared, rsp.PinUvAuthToken)
	return tok, st, err
}

func ctap2Call(ctx context.Context, c *ctaphid.Client, cmd byte, params map[int]any) (ctap2.Status, []byte, error) {
	msg := []byte{cmd}
	if params != nil {
		b, err := ctap2.Marshal(params)
		if err != nil {
			return 0, nil, err
		}
		msg = append(msg, b...)
	}
	rsp, err := c.Call(ctx, ctaphid.CmdCBOR, msg)
	if err != nil || len(rsp) == 0 {
		return 0, nil, errors.Join(err, errors.New("no answer"))
	}
	return ctap2.Status(rsp[0]), rsp[1:], nil
}

// crashState is what the client was told, checked after each restart.
type crashState struct {
	retries    uint64          // PIN retries last seen
	counter    uint32          // highest signature counter seen
	signed     map[string]bool // U2F challenges the client got a signature for
	passkeys   map[string]bool // user ids the client was told were created
	rightPINAt int             // trial in which the right PIN was last sent
}

// TestCrashTrials runs the daemon on swtpm and kills it with SIGKILL at a
// random point of a random operation (U2F register and authenticate, a
// wrong PIN, the right PIN, a passkey made with the PIN, a discoverable
// getAssertion), then restarts it and checks what a user relies on: PIN
// retries never come back without the right PIN, the signature counter
// never repeats or goes back, a request signed before the crash is never
// signed again, and no passkey the client was told was created is lost.
func TestCrashTrials(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	state := t.TempDir()
	n := trials(12)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*5*time.Second+time.Minute)
	defer cancel()
	app := sha256.Sum256([]byte("https://crash.example"))

	addr, stop, _ := startDaemonIn(t, state, "--tpm", spec)
	c := dial(t, ctx, addr)
	if st, err := pinCommand(ctx, c, true, "1234"); err != nil || st != ctap2.OK {
		t.Fatalf("setPIN: %v %v", st, err)
	}
	reg, err := u2fhost.Register(ctx, c, sha256.Sum256([]byte("reg")), app)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	s := &crashState{retries: 8, signed: map[string]bool{}, passkeys: map[string]bool{}}
	ops := map[string]int{}
	cut := 0
	for i := range n {
		addr, _, kill := startDaemonIn(t, state, "--tpm", spec)
		c := dial(t, ctx, addr)
		s.check(t, ctx, c, i, app, reg)
		op := []string{"authenticate", "register", "wrong PIN", "right PIN", "passkey", "discoverable"}[rand.IntN(6)]
		ops[op]++
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.run(ctx, c, op, i, app, reg)
		}()
		time.Sleep(time.Duration(rand.IntN(25000)) * time.Microsecond)
		kill()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			cut++ // the client never got its answer
		}
	}
	addr, stop, _ = startDaemonIn(t, state, "--tpm", spec)
	s.check(t, ctx, dial(t, ctx, addr), n, app, reg)
	stop()
	t.Logf("%d SIGKILLs (%d cut a request off): ops %v; %d passkeys the client was told of, all kept; counter at %d; PIN retries %d",
		n, cut, ops, len(s.passkeys), s.counter, s.retries)
}

func (s *crashState) run(ctx context.Context, c *ctaphid.Client, op string, i int, app [32]byte, reg *u2fhost.Registration) {
	switch op {
	case "authenticate":
		chal := sha256.Sum256([]byte(fmt.Sprint("auth ", i)))
		if a, err := u2fhost.Authenticate(ctx, c, chal, app, reg.KeyHandle, 0x03); err == nil {
			s.signed[string(chal[:])] = true
			s.seeCounter(a.Counter)
		}
	case "register":
		u2fhost.Register(ctx, c, sha256.Sum256([]byte(fmt.Sprint("reg ", i))), app)
	case "wrong PIN":
		pinToken(ctx, c, "0000", ctap2.PermGetAssertion, "crash.example")
	case "right PIN":
		s.rightPINAt = i
		pinToken(ctx, c, "1234", ctap2.PermGetAssertion, "crash.example")
	case "passkey":
		s.rightPINAt = i
		tok, st, err := pinToken(ctx, c, "1234", ctap2.PermMakeCredential, "crash.example")
		if err != nil || st != ctap2.OK {
			return
		}
		proto, _ := pin.ProtocolByVersion(2)
		cdh := sha256.Sum256([]byte(fmt.Sprint("mc ", i)))
		uid := []byte(fmt.Sprint("user ", i))
		st, _, err = ctap2Call(ctx, c, ctap2.CmdMakeCredential, map[int]any{1: cdh[:],
			2: map[string]any{"id": "crash.example"}, 3: map[string]any{"id": uid, "name": "u"},
			4: []map[string]any{{"type": "public-key", "alg": -7}}, 7: map[string]bool{"rk": true},
			8: proto.Authenticate(tok, cdh[:]), 9: 2})
		if err == nil && st == ctap2.OK {
			s.passkeys[string(uid)] = true
		}
	case "discoverable":
		cdh := sha256.Sum256([]byte(fmt.Sprint("ga ", i)))
		st, body, err := ctap2Call(ctx, c, ctap2.CmdGetAssertion, map[int]any{1: "crash.example", 2: cdh[:]})
		if err == nil && st == ctap2.OK {
			var rsp ctap2.GetAssertionResponse
			if cbor.Unmarshal(body, &rsp) == nil && len(rsp.AuthData) >= 37 {
				s.seeCounter(uint32(rsp.AuthData[33])<<24 | uint32(rsp.AuthData[34])<<16 | uint32(rsp.AuthData[35])<<8 | uint32(rsp.AuthData[36]))
			}
		}
	}
}

func (s *crashState) seeCounter(v uint32) {
	if v > s.counter {
		s.counter = v
	}
}

// check verifies the invariants against a freshly started daemon.
func (s *crashState) check(t *testing.T, ctx context.Context, c *ctaphid.Client, i int, app [32]byte, reg *u2fhost.Registration) {
	t.Helper()
	r := pinRetries(t, ctx, c)
	if r > s.retries && s.rightPINAt != i-1 {
		t.Fatalf("trial %d: PIN retries went up from %d to %d without the right PIN", i, s.retries, r)
	}
	s.retries = r
	if r <= 3 {
		// Give the retries back (the right PIN), so the trials go on.
		if _, st, err := pinToken(ctx, c, "1234", ctap2.PermGetAssertion, "crash.example"); err != nil || st != ctap2.OK {
			t.Fatalf("trial %d: the right PIN: %v %v", i, st, err)
		}
		s.retries = pinRetries(t, ctx, c)
	}
	// Signatures: the counter only goes up; nothing signed before is
	// signed again.
	chal := sha256.Sum256([]byte(fmt.Sprint("check ", i)))
	a, err := u2fhost.Authenticate(ctx, c, chal, app, reg.KeyHandle, 0x03)
	if err != nil {
		t.Fatalf("trial %d: authenticate after the restart: %v", i, err)
	}
	if a.Counter <= s.counter {
		t.Fatalf("trial %d: counter %d after %d", i, a.Counter, s.counter)
	}
	s.counter = a.Counter
	for signed := range s.signed {
		var ch [32]byte
		copy(ch[:], signed)
		if _, err := u2fhost.Authenticate(ctx, c, ch, app, reg.KeyHandle, 0x03); err == nil {
			t.Fatalf("trial %d: a request signed before a crash was signed again", i)
		}
	}
	// Passkeys: every one the client was told of is still there.
	if len(s.passkeys) > 0 {
		cdh := sha256.Sum256([]byte(fmt.Sprint("list ", i)))
		st, body, err := ctap2Call(ctx, c, ctap2.CmdGetAssertion, map[int]any{1: "crash.example", 2: cdh[:], 5: map[string]bool{"up": false}})
		if err != nil || st != ctap2.OK {
			t.Fatalf("trial %d: listing passkeys: %v %v", i, st, err)
		}
		var first ctap2.GetAssertionResponse
		cbor.Unmarshal(body, &first)
		found := map[string]bool{string(first.User.ID): true}
		for k := 1; k < int(first.NumberOfCredentials); k++ {
			st, body, err := ctap2Call(ctx, c, ctap2.CmdGetNextAssertion, nil)
			if err != nil || st != ctap2.OK {
				t.Fatalf("trial %d: getNextAssertion: %v %v", i, st, err)
			}
			var next ctap2.GetAssertionResponse
			cbor.Unmarshal(body, &next)
			found[string(next.User.ID)] = true
		}
		for uid := range s.passkeys {
			if !found[uid] {
				t.Fatalf("trial %d: passkey %q, which the client was told was created, is gone", i, uid)
			}
		}
	}
}
