package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func dial(t *testing.T, ctx context.Context, addr string) *ctaphid.Client {
	t.Helper()
	tr, err := ctaphid.DialUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	c := ctaphid.NewClient(tr)
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKilledDaemonKeepsCredentialsAndCounter kills the daemon on swtpm
// with SIGKILL several times: its credentials keep working with the same
// state directory, the signature counter always moves forward, and a
// request signed before a kill is refused after it (the replay store).
func TestKilledDaemonKeepsCredentialsAndCounter(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := sha256.Sum256([]byte("https://example.com"))

	addr, _, kill := startDaemonIn(t, state, "--tpm", spec)
	reg, err := u2fhost.Register(ctx, dial(t, ctx, addr), sha256.Sum256([]byte("r")), app)
	if err != nil {
		t.Fatal(err)
	}
	var last uint32
	var lastChal [32]byte
	for round := range 4 {
		c := dial(t, ctx, addr)
		if round > 0 {
			// The last request signed before the kill is still refused.
			_, err := u2fhost.Authenticate(ctx, c, lastChal, app, reg.KeyHandle, 0x03)
			var se *u2fhost.StatusError
			if !errors.As(err, &se) || se.SW != 0x6a80 {
				t.Fatalf("round %d: replay of a request signed before SIGKILL: %v", round, err)
			}
		}
		for i := range 3 {
			chal := sha256.Sum256([]byte{byte(round), byte(i)})
			a, err := u2fhost.Authenticate(ctx, c, chal, app, reg.KeyHandle, 0x03)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			msg := append(append(app[:], a.FlagsAndCounter...), chal[:]...)
			d := sha256.Sum256(msg)
			if !ecdsa.VerifyASN1(reg.PublicKey, d[:], a.Signature) {
				t.Fatalf("round %d: signature does not verify", round)
			}
			if a.Counter <= last {
				t.Fatalf("round %d: counter %d after %d", round, a.Counter, last)
			}
			last, lastChal = a.Counter, chal
		}
		kill()
		addr, _, kill = startDaemonIn(t, state, "--tpm", spec)
	}
	t.Logf("last counter %d after 4 kills", last)
}
