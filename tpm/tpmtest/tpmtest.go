// Package tpmtest gives tests a TPM: the embedded simulator by default, or
// swtpm when a test asks for it and it is installed.
package tpmtest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// Simulator opens a fresh in-memory reference simulator, closed when the
// test ends.
func Simulator(tb testing.TB) transport.TPMCloser {
	tb.Helper()
	t, _, err := tpm.Open("sim")
	if err != nil {
		tb.Fatalf("open simulator: %v", err)
	}
	tb.Cleanup(func() { t.Close() })
	return t
}

// SWTPM starts swtpm on a unix socket in a temporary directory and returns
// its backend spec ("unix:/tmp/.../swtpm.sock"). It skips the test when
// swtpm is not installed (CI installs it).
func SWTPM(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		SkipMissing(tb, "swtpm not installed (apt-get install swtpm): skipping the swtpm backend")
	}
	dir := tb.TempDir()
	sock := filepath.Join(dir, "swtpm.sock")
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start swtpm: %v", err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("swtpm did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "unix:" + sock
}

// Engine opens an engine on t with a fresh identity.
func Engine(tb testing.TB, t transport.TPM, opt tpm.Options) *tpm.Engine {
	tb.Helper()
	e, _, err := tpm.New(t, tpm.NewIdentity(), opt)
	if err != nil {
		tb.Fatalf("tpm.New: %v", err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

// SkipMissing skips a test whose real component is not installed, unless
// TPM_U2F_REQUIRE_ALL is set (CI sets it, and installs everything), where a
// missing component is a failure rather than a silent skip.
func SkipMissing(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("TPM_U2F_REQUIRE_ALL") != "" {
		tb.Fatalf("%s (required: TPM_U2F_REQUIRE_ALL is set)", why)
	}
	tb.Skip(why)
}
