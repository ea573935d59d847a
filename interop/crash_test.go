package interop

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// TestCrashBetweenRecordAndResponse kills the daemon (on swtpm) right
// after a signature's replay record is durable and before the response
// leaves, many times. After each restart the same request is refused — the
// client never got a response, and it never gets a second signature — and
// a new request is signed.
func TestCrashBetweenRecordAndResponse(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	state := t.TempDir()
	app := sha256.Sum256([]byte("https://example.com"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	addr, stop, _ := startDaemonIn(t, state, "--tpm", spec)
	reg, err := u2fhost.Register(ctx, dial(t, ctx, addr), sha256.Sum256([]byte("r")), app)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	const trials = 10
	for i := range trials {
		chal := sha256.Sum256([]byte{'t', byte(i)})
		addr, _, _, exited := startDaemonEnv(t, state, []string{"TPM_U2F_TEST_CRASH_AFTER_RECORD=1"}, "--tpm", spec)
		actx, acancel := context.WithCancel(ctx)
		go func() { <-exited; acancel() }()
		if a, err := u2fhost.Authenticate(actx, dial(t, ctx, addr), chal, app, reg.KeyHandle, 0x03); err == nil {
			t.Fatalf("trial %d: the daemon answered (counter %d) instead of crashing after the record", i, a.Counter)
		}
		<-exited
		acancel()

		addr, stop, _ = startDaemonIn(t, state, "--tpm", spec)
		c := dial(t, ctx, addr)
		var se *u2fhost.StatusError
		if _, err := u2fhost.Authenticate(ctx, c, chal, app, reg.KeyHandle, 0x03); !errors.As(err, &se) || se.SW != 0x6a80 {
			t.Fatalf("trial %d: the request signed before the crash was not refused: %v", i, err)
		}
		other := sha256.Sum256([]byte{'o', byte(i)})
		if _, err := u2fhost.Authenticate(ctx, c, other, app, reg.KeyHandle, 0x03); err != nil {
			t.Fatalf("trial %d: a new request after the restart: %v", i, err)
		}
		stop()
	}
	t.Logf("%d crashes between record and response: every replay refused, never signed twice", trials)
}
