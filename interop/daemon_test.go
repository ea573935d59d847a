package interop

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/tpm-u2f once per test process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tpm-u2f-interop")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tpm-u2f")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/tpm-u2f/tpm-u2f/cmd/tpm-u2f").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freeUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// startDaemon runs `tpm-u2f run` on a loopback UDP port and waits for its
// ready line. stop sends SIGTERM and returns the exit error.
func startDaemon(t *testing.T, extraArgs ...string) (addr string, stop func() error) {
	addr, stop, _ = startDaemonIn(t, t.TempDir(), extraArgs...)
	return addr, stop
}

// startDaemonIn is startDaemon with a given state directory; kill ends the
// daemon with SIGKILL, as a crash would.
func startDaemonIn(t *testing.T, state string, extraArgs ...string) (addr string, stop func() error, kill func()) {
	t.Helper()
	addr, stop, kill, _ = startDaemonEnv(t, state, nil, extraArgs...)
	return addr, stop, kill
}

// startDaemonEnv is startDaemonIn with extra environment variables; exited
// is closed when the daemon process ends.
func startDaemonEnv(t *testing.T, state string, env []string, extraArgs ...string) (addr string, stop func() error, kill func(), exited <-chan struct{}) {
	t.Helper()
	addr = freeUDPPort(t)
	// The last --presence given wins, so callers may override "always".
	args := append([]string{"run", "--transport", "udp:" + addr, "--presence", "always", "--state", state}, extraArgs...)
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			t.Log("daemon: " + sc.Text())
			if !signalled && strings.Contains(sc.Text(), `msg="tpm-u2f ready"`) {
				close(ready)
				signalled = true
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("daemon not ready after 30 s")
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	var once sync.Once
	var exitErr error
	stop = func() error {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
				exitErr = waitErr
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
				exitErr = fmt.Errorf("daemon did not stop within 10 s of SIGTERM")
			}
		})
		return exitErr
	}
	t.Cleanup(func() { stop() })
	kill = func() { cmd.Process.Kill(); <-done; stop() }
	return addr, stop, kill, done
}
