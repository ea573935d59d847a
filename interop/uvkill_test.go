package interop

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd/fprintdtest"
)

func uvRetries(t *testing.T, ctx context.Context, c *ctaphid.Client) uint64 {
	t.Helper()
	st, rsp, err := clientPIN(ctx, c, map[int]any{2: ctap2.PINGetUVRetries})
	if err != nil || st != ctap2.OK || rsp.UVRetries == nil {
		t.Fatalf("getUVRetries: %v %v", st, err)
	}
	return *rsp.UVRetries
}

// TestUVAttemptSurvivesSIGKILL: the daemon (on swtpm) is killed with
// SIGKILL while the reader waits for a finger in
// getPinUvAuthTokenUsingUvWithPermissions. The attempt was written to the
// TPM before the reader was asked, so the next daemon reports one UV retry
// fewer: killing the daemon mid-try gives no attempt back.
func TestUVAttemptSurvivesSIGKILL(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	state := t.TempDir()
	bus := notifytest.SessionBus(t)
	fp := &fprintdtest.Server{Enrolled: []string{"right-index-finger"}} // the reader waits forever
	fp.Serve(t, bus)
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	addr, _, kill, _ := startDaemonEnv(t, state, env, "--tpm", spec)
	c := dial(t, ctx, addr)
	if r := uvRetries(t, ctx, c); r != tpm.UVRetries {
		t.Fatalf("UV retries at first: %d", r)
	}
	proto, _ := pin.ProtocolByVersion(2)
	st, rsp, err := clientPIN(ctx, c, map[int]any{1: 2, 2: ctap2.PINGetKeyAgreement})
	if err != nil || st != ctap2.OK {
		t.Fatalf("getKeyAgreement: %v %v", st, err)
	}
	ours, _ := pin.NewKeyAgreement()
	if _, err := ours.SharedSecret(proto, rsp.KeyAgreement.X, rsp.KeyAgreement.Y); err != nil {
		t.Fatal(err)
	}
	x, y := ours.PublicXY()
	go clientPIN(ctx, c, map[int]any{1: 2, 2: ctap2.PINGetTokenUsingUVWithPerms, 3: map[int]any{1: 2, 3: -25, -1: 1, -2: x, -3: y},
		9: ctap2.PermGetAssertion, 10: "example.com"})
	for !slices.Contains(fp.Calls(), "VerifyStart") {
		if ctx.Err() != nil {
			t.Fatal("the reader was never asked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	kill()

	addr, stop, _, _ := startDaemonEnv(t, state, env, "--tpm", spec)
	if r := uvRetries(t, ctx, dial(t, ctx, addr)); r != tpm.UVRetries-1 {
		t.Fatalf("UV retries after a SIGKILL while the reader waited: %d, want %d", r, tpm.UVRetries-1)
	}
	if err := stop(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
}
