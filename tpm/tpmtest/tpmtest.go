// Package tpmtest gives tests a TPM: the embedded simulator by default, or
// swtpm when a test asks for it and it is installed.
package tpmtest

import (
	"fmt"
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
func SWTPM(tb testing.TB) string { return StartSWTPM(tb).Spec }

// SWTPMServer is a running swtpm whose state directory outlives it.
type SWTPMServer struct {
	Spec string
	tb   testing.TB
	bin  string
	dir  string
	sock string
	cmd  *exec.Cmd
}

// StartSWTPM is SWTPM for a test that also needs to restart the TPM.
func StartSWTPM(tb testing.TB) *SWTPMServer {
	tb.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		SkipMissing(tb, "swtpm not installed (apt-get install swtpm): skipping the swtpm backend")
	}
	dir := tb.TempDir()
	s := &SWTPMServer{tb: tb, bin: bin, dir: dir, sock: filepath.Join(dir, "swtpm.sock")}
	s.Spec = "unix:" + s.sock
	s.start()
	tb.Cleanup(s.stop)
	return s
}

func (s *SWTPMServer) start() {
	s.tb.Helper()
	if err := s.StartErr(); err != nil {
		s.tb.Fatal(err)
	}
}

// StartErr starts a stopped swtpm again on the same state, like Restart's
// second half; safe to call from any goroutine.
func (s *SWTPMServer) StartErr() error {
	os.Remove(s.sock)
	s.cmd = exec.Command(s.bin, "socket", "--tpm2",
		"--tpmstate", "dir="+s.dir,
		"--server", "type=unixio,path="+s.sock,
		"--ctrl", "type=unixio,path="+filepath.Join(s.dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start swtpm: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", s.sock)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("swtpm did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills swtpm (SIGKILL): the TPM is gone until StartErr.
func (s *SWTPMServer) Stop() { s.stop() }

func (s *SWTPMServer) stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart kills swtpm (SIGKILL) and starts it again on the same state:
// what a TPM reset looks like to its users (every loaded object and
// session gone, NV kept).
func (s *SWTPMServer) Restart() {
	s.tb.Helper()
	s.stop()
	s.start()
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
