package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"net"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// daemonBinary builds cmd/tpm-u2f once per test process, as `make build` does
// (no race detector, no coverage): the daemon under measurement is the one
// users run. $E2E_DAEMON names a prebuilt binary to measure instead.
func daemonBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if binPath = os.Getenv("E2E_DAEMON"); binPath != "" {
			return // a binary built elsewhere: before/after comparisons
		}
		dir, err := os.MkdirTemp("", "tpm-u2f-e2e")
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
		tb.Fatal(buildErr)
	}
	return binPath
}

// tmpfsMagic is TMPFS_MAGIC from linux/magic.h.
const tmpfsMagic = 0x01021994

// diskDir is a fresh directory on a real disk: the replay store's fsync
// must be the one users pay, and on tmpfs it costs nothing. It prefers
// the test's temporary directory and falls back to /var/tmp.
func diskDir(tb testing.TB) string {
	tb.Helper()
	for _, parent := range []string{"", "/var/tmp"} {
		dir, err := os.MkdirTemp(parent, "tpm-u2f-e2e-state")
		if err != nil {
			continue
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err == nil && st.Type != tmpfsMagic {
			tb.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
		os.RemoveAll(dir)
	}
	tb.Skip("no directory on a real disk (TMPDIR and /var/tmp are tmpfs): the replay store's fsync would be free")
	return ""
}

func freeUDPAddr(tb testing.TB) string {
	tb.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// daemon is a running `tpm-u2f run`.
type daemon struct {
	Addr    string
	Control string // its control socket
	Log     string // its stderr
	Ready   time.Duration
	cmd     *exec.Cmd
	done    chan struct{}
}

// startDaemon runs `tpm-u2f run` on tpmSpec with the UDP transport, a
// private state directory on a real disk, presence always approved, and
// a private control socket, and returns once it answers a CTAPHID PING.
// Ready is the time from process start to that first answered PING.
func startDaemon(tb testing.TB, tpmSpec string, extra ...string) *daemon {
	tb.Helper()
	return startDaemonEnv(tb, tpmSpec, nil, extra...)
}

// startDaemonEnv is startDaemon with extra environment variables.
func startDaemonEnv(tb testing.TB, tpmSpec string, env []string, extra ...string) *daemon {
	tb.Helper()
	return startBinaryEnv(tb, daemonBinary(tb), tpmSpec, env, extra...)
}

// startBinary is startDaemon with another tpm-u2f binary.
func startBinary(tb testing.TB, bin, tpmSpec string, extra ...string) *daemon {
	tb.Helper()
	return startBinaryEnv(tb, bin, tpmSpec, nil, extra...)
}

func startBinaryEnv(tb testing.TB, bin, tpmSpec string, env []string, extra ...string) *daemon {
	tb.Helper()
	dir := diskDir(tb)
	d := &daemon{Addr: freeUDPAddr(tb), Control: filepath.Join(dir, "control.sock"), Log: filepath.Join(dir, "daemon.log"), done: make(chan struct{})}
	args := append([]string{"run", "--tpm", tpmSpec, "--transport", "udp:" + d.Addr, "--presence", "always",
		"--state", filepath.Join(dir, "state"), "--control", d.Control}, extra...)
	logf, err := os.Create(d.Log)
	if err != nil {
		tb.Fatal(err)
	}
	d.cmd = exec.Command(bin, args...)
	// No session bus: the tray and the screen-lock watch stay out of the
	// measurement.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DBUS_SESSION_BUS_ADDRESS=") {
			d.cmd.Env = append(d.cmd.Env, kv)
		}
	}
	d.cmd.Env = append(d.cmd.Env, env...)
	d.cmd.Stderr = logf
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	logf.Close()
	go func() { d.cmd.Wait(); close(d.done) }()
	tb.Cleanup(func() {
		d.stop()
		if tb.Failed() {
			if b, err := os.ReadFile(d.Log); err == nil {
				tb.Logf("daemon log:\n%s", b)
			}
		}
	})
	c, err := dialUDP(d.Addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := c.Init(ctx)
		if err == nil {
			_, err = c.Call(ctx, ctaphid.CmdPing, []byte("ready?"))
		}
		cancel()
		if err == nil {
			d.Ready = time.Since(start)
			return d
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.Log)
			tb.Fatalf("daemon exited before it was ready:\n%s", b)
		default:
		}
		if time.Since(start) > 30*time.Second {
			tb.Fatalf("daemon not ready after 30 s: %v", err)
		}
		// The client's reader goroutine may hold a stale answer; a
		// fresh socket per attempt keeps attempts apart.
		c.Close()
		if c, err = dialUDP(d.Addr); err != nil {
			tb.Fatal(err)
		}
	}
}

// signal sends sig to the daemon.
func (d *daemon) signal(sig os.Signal) error { return d.cmd.Process.Signal(sig) }

// stop ends the daemon with SIGTERM (SIGKILL after 10 s).
func (d *daemon) stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		return errors.New("daemon did not stop within 10 s of SIGTERM")
	}
	return nil
}

// rssKiB is the daemon's resident set (VmRSS) in KiB.
func (d *daemon) rssKiB(tb testing.TB) int {
	tb.Helper()
	return d.status(tb, "VmRSS:")
}

// anonKiB is the anonymous part of the resident set (RssAnon: heap,
// stacks), in KiB: VmRSS also counts the executable's mapped pages,
// which differ between builds of the same code by a MiB or two.
func (d *daemon) anonKiB(tb testing.TB) int {
	tb.Helper()
	return d.status(tb, "RssAnon:")
}

func (d *daemon) status(tb testing.TB, field string) int {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("no %s in /proc/PID/status", field)
	return 0
}
