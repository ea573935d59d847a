package interop

import (
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd/fprintdtest"
)

// TestPythonFido2BuiltInUV: the daemon with its default --uv auto finds a
// reader with an enrolled finger on the system bus (a fake fprintd on a
// private dbus-daemon named by DBUS_SYSTEM_BUS_ADDRESS), and python-fido2
// registers and signs in with a passkey verified by the fingerprint alone
// (no PIN), sees a finger that does not match cost one UV retry, and gets
// a pinUvAuthToken by built-in UV (getPinUvAuthTokenUsingUvWithPermissions).
func TestPythonFido2BuiltInUV(t *testing.T) {
	py := pythonWithFido2(t)
	bus := notifytest.SessionBus(t)
	match := []fprintdtest.Status{{Result: "verify-match", Done: true}}
	noMatch := []fprintdtest.Status{{Result: "verify-no-match", Done: true}}
	fp := &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Script: [][]fprintdtest.Status{match, match, noMatch, match}}
	fp.Serve(t, bus)
	addr, stop, _, _ := startDaemonEnv(t, t.TempDir(), []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus}, "--tpm", "sim")
	host, port, _ := net.SplitHostPort(clientAddr(t, addr))
	out, err := exec.Command(py, "python/uv_udp.py", host, port).CombinedOutput()
	t.Logf("python-fido2:\n%s", out)
	if err != nil || !strings.Contains(string(out), " 0 failed") {
		t.Fatalf("python-fido2 built-in UV interop failed: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	calls := fp.Calls()
	claims := 0
	for _, c := range calls {
		if c == "Claim" {
			claims++
		}
	}
	if claims != 4 || strings.Count(strings.Join(calls, ","), "Release") != 4 || !slices.Contains(calls, "VerifyStop") {
		t.Fatalf("fprintd calls %v: want 4 verifications, each released", calls)
	}
}
