package interop

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// TestSWTPMRestartUnderDaemon kills swtpm under the running daemon and
// starts it again on the same state, three times: every loaded object
// and session is gone, NV is kept. The daemon reconnects and rebuilds
// what it had loaded; credentials, the PIN and its retries survive, and
// the counter keeps going up.
func TestSWTPMRestartUnderDaemon(t *testing.T) {
	sw := tpmtest.StartSWTPM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr, stop, _ := startDaemonIn(t, t.TempDir(), "--tpm", sw.Spec)
	c := dial(t, ctx, addr)
	app := sha256.Sum256([]byte("https://example.com"))
	reg, err := u2fhost.Register(ctx, c, sha256.Sum256([]byte("r")), app)
	if err != nil {
		t.Fatal(err)
	}
	a, err := u2fhost.Authenticate(ctx, c, sha256.Sum256([]byte("a0")), app, reg.KeyHandle, 0x03)
	if err != nil {
		t.Fatal(err)
	}
	last := a.Counter
	if st, err := pinCommand(ctx, c, true, "1234"); err != nil || st != ctap2.OK {
		t.Fatalf("setPIN: %v %v", st, err)
	}
	failures := 0
	for round := range 3 {
		sw.Restart()
		var err error
		for attempt := range 3 {
			chal := sha256.Sum256([]byte{'a', byte(round), byte(attempt)})
			a, err = u2fhost.Authenticate(ctx, c, chal, app, reg.KeyHandle, 0x03)
			if err == nil {
				break
			}
			failures++
			t.Logf("round %d: authenticate after the TPM restart: %v", round, err)
		}
		if err != nil {
			t.Fatalf("round %d: the daemon did not recover from the TPM restart: %v", round, err)
		}
		if a.Counter <= last {
			t.Fatalf("round %d: counter %d after %d", round, a.Counter, last)
		}
		last = a.Counter
		if r := pinRetries(t, ctx, c); r != 8 {
			t.Fatalf("round %d: PIN retries %d after the restart", round, r)
		}
		if st, err := pinCommand(ctx, c, false, "1234"); err != nil || st != ctap2.OK {
			t.Fatalf("round %d: the PIN after the restart: %v %v", round, st, err)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	t.Logf("3 swtpm restarts under the daemon: %d requests failed before it recovered; credential, PIN and counter kept", failures)
}
