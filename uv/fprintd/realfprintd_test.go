package fprintd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd"
)

// The Verifier against the real fprintd (Debian's /usr/libexec/fprintd),
// not fprintdtest, with libfprint's "virtual_device" driver as the reader:
// libfprint exposes it when FP_VIRTUAL_DEVICE names a UNIX socket, listens
// on that socket while the reader is claimed (open), and takes one text
// command per connection (libfprint's drivers/virtual-device.c): SCAN <id>
// is a finger with that identity, RETRY <n> an FpDeviceRetry (0 general,
// 1 too short, 2 not centred, 3 remove finger), ERROR <n> an FpDeviceError
// (0 general, 5 protocol, 6 invalid data). Enrolling is fprintd's own API
// (Claim, EnrollStart, one SCAN a stage, Release), as fprintd's tests do.
const (
	fprintdBin   = "/usr/libexec/fprintd"
	debianPython = "/usr/bin/python3" // python3-dbusmock is Debian's: not a pyenv's python3
	enrolled     = "right-index-finger"
)

// realFprintd is fprintd on a private system bus.
type realFprintd struct {
	addr   string     // the bus's address
	socket string     // the virtual reader's command socket
	conn   *dbus.Conn // the test's own client: enrolls, claims as "someone else"
	dev    dbus.BusObject
	user   string
	log    *bytes.Buffer // fprintd's and the mock's output, shown when the test fails
	logMu  *sync.Mutex
}

// syncWriter is the log the child processes share.
type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// start runs cmd until the test ends and returns a channel closed when it
// exits.
func start(t *testing.T, cmd *exec.Cmd) <-chan struct{} {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return exited
}

// waitName waits until name has an owner on conn's bus, failing when the
// process that should own it exits first or the deadline passes.
func waitName(t *testing.T, conn *dbus.Conn, name string, exited <-chan struct{}) {
	t.Helper()
	match := []dbus.MatchOption{dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, name)}
	if err := conn.AddMatchSignal(match...); err != nil {
		t.Fatal(err)
	}
	defer conn.RemoveMatchSignal(match...)
	ch := make(chan *dbus.Signal, 8)
	conn.Signal(ch)
	defer conn.RemoveSignal(ch)
	deadline := time.After(20 * time.Second)
	for {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err != nil {
			t.Fatal(err)
		}
		if has {
			return
		}
		select {
		case <-ch:
		case <-exited:
			t.Fatalf("the process that should own %s exited", name)
		case <-deadline:
			t.Fatalf("%s has no owner after 20s", name)
		}
	}
}

// startRealFprintd starts a private dbus-daemon used as the system bus,
// python-dbusmock's polkitd template on it, and Debian's fprintd with a
// virtual reader and its prints in a temporary directory.
func startRealFprintd(t *testing.T) *realFprintd {
	t.Helper()
	if _, err := os.Stat(fprintdBin); err != nil {
		tpmtest.SkipMissing(t, "fprintd not installed (apt-get install fprintd)")
	}
	if err := exec.Command(debianPython, "-c", "import dbusmock").Run(); err != nil {
		tpmtest.SkipMissing(t, "python-dbusmock not installed (apt-get install python3-dbusmock)")
	}
	bus, err := exec.LookPath("dbus-daemon")
	if err != nil {
		tpmtest.SkipMissing(t, "dbus-daemon not installed (apt-get install dbus-daemon)")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: a UNIX socket's path is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "fprintd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &realFprintd{socket: filepath.Join(dir, "reader"), user: u.Username, log: new(bytes.Buffer), logMu: new(sync.Mutex)}
	out := syncWriter{f.logMu, f.log}
	t.Cleanup(func() {
		if t.Failed() {
			f.logMu.Lock()
			t.Logf("fprintd and polkitd said:\n%s", f.log)
			f.logMu.Unlock()
		}
	})

	// A bus of the system type that lets everyone do everything: the
	// test's fprintd, mock polkitd and clients are the only ones on it.
	busSocket := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+busSocket+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`), 0o600); err != nil {
		t.Fatal(err)
	}
	busCmd := exec.Command(bus, "--config-file="+conf, "--nofork", "--print-address")
	busOut, err := busCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	busCmd.Stderr = out
	start(t, busCmd)
	line := make([]byte, 0, 256)
	for buf := make([]byte, 1); ; {
		if _, err := busOut.Read(buf); err != nil {
			t.Fatalf("dbus-daemon: %v", err)
		}
		if buf[0] == '\n' {
			break
		}
		line = append(line, buf[0])
	}
	f.addr = strings.TrimSpace(string(line))
	go io.Copy(io.Discard, busOut)
	f.conn = notifytest.Connect(t, f.addr)

	env := append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+f.addr)
	// The one stand-in: polkit. python-dbusmock's polkitd template answers
	// CheckAuthorization as told (SetAllowed below), as fprintd's own test
	// suite does; a real polkitd would need the system's users and rules.
	polkit := exec.Command(debianPython, "-m", "dbusmock", "--system", "--template", "polkitd")
	polkit.Env = env
	polkit.Stdout, polkit.Stderr = out, out
	waitName(t, f.conn, "org.freedesktop.PolicyKit1", start(t, polkit))
	if err := f.conn.Object("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority").Call("org.freedesktop.DBus.Mock.SetAllowed", 0,
		[]string{"net.reactivated.fprint.device.verify", "net.reactivated.fprint.device.enroll", "net.reactivated.fprint.device.setusername"}).Err; err != nil {
		t.Fatalf("polkitd mock SetAllowed: %v", err)
	}

	// fprintd -t: no idle exit. STATE_DIRECTORY: where it stores prints
	// (else /var/lib/fprint). Only the virtual reader, even on a machine
	// with a real one. G_DEBUG=fatal-criticals as fprintd's tests run it.
	fp := exec.Command(fprintdBin, "-t")
	fp.Env = append(env,
		"FP_VIRTUAL_DEVICE="+f.socket,
		"FP_DRIVERS_ALLOWLIST=virtual_device", "FP_DRIVERS_WHITELIST=virtual_device",
		"STATE_DIRECTORY="+filepath.Join(dir, "state"),
		"RUNTIME_DIRECTORY="+filepath.Join(dir, "run"),
		"G_DEBUG=fatal-criticals",
		"G_MESSAGES_DEBUG=all",
	)
	fp.Stdout, fp.Stderr = out, out
	waitName(t, f.conn, fprintd.Service, start(t, fp))

	var path dbus.ObjectPath
	if err := f.conn.Object(fprintd.Service, fprintd.ManagerPath).Call(fprintd.ManagerIface+".GetDefaultDevice", 0).Store(&path); err != nil {
		t.Fatalf("GetDefaultDevice: %v", err)
	}
	f.dev = f.conn.Object(fprintd.Service, path)
	name, err := f.dev.GetProperty(fprintd.DeviceIface + ".name")
	if err != nil || !strings.Contains(fmt.Sprint(name.Value()), "Virtual") {
		t.Fatalf("fprintd's default reader is %v (%v), not libfprint's virtual device", name, err)
	}
	return f
}

// send gives the virtual reader one command. The reader listens only
// while it is claimed, so send waits for it to listen; the driver closes
// the connection once it has taken the command in, so send returns only
// then (the next command cannot overtake it).
func (f *realFprintd) send(t *testing.T, cmd string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("unix", f.socket, time.Second)
		if err == nil {
			c.SetDeadline(deadline)
			_, err = c.Write([]byte(cmd))
			if err == nil {
				c.(*net.UnixConn).CloseWrite()
				_, err = io.Copy(io.Discard, c)
			}
			c.Close()
			if err != nil {
				t.Fatalf("reader command %q: %v", cmd, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the virtual reader never listened for %q: %v", cmd, err)
		}
		// Not listening yet (nobody has claimed the reader): poll.
		time.Sleep(10 * time.Millisecond)
	}
}

// signals subscribes the test's connection to one signal of the reader.
func (f *realFprintd) signals(t *testing.T, iface, member string) <-chan *dbus.Signal {
	t.Helper()
	match := []dbus.MatchOption{dbus.WithMatchObjectPath(f.dev.Path()), dbus.WithMatchInterface(iface), dbus.WithMatchMember(member)}
	if err := f.conn.AddMatchSignal(match...); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *dbus.Signal, 32)
	f.conn.Signal(ch)
	t.Cleanup(func() { f.conn.RemoveSignal(ch); f.conn.RemoveMatchSignal(match...) })
	out := make(chan *dbus.Signal, 32)
	go func() {
		for s := range ch {
			if s.Path == f.dev.Path() && s.Name == iface+"."+member {
				out <- s
			}
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan *dbus.Signal, what string) *dbus.Signal {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		return nil
	}
}

// enroll enrolls one finger through fprintd's API as a user's enrolment
// tool does: Claim, EnrollStart, a touch a stage until enroll-completed,
// Release.
func (f *realFprintd) enroll(t *testing.T, finger, id string) {
	t.Helper()
	status := f.signals(t, fprintd.DeviceIface, "EnrollStatus")
	if err := f.dev.Call(fprintd.DeviceIface+".Claim", 0, f.user).Err; err != nil {
		t.Fatalf("Claim: %v", err)
	}
	defer func() {
		if err := f.dev.Call(fprintd.DeviceIface+".Release", 0).Err; err != nil {
			t.Errorf("Release: %v", err)
		}
	}()
	if err := f.dev.Call(fprintd.DeviceIface+".EnrollStart", 0, finger).Err; err != nil {
		t.Fatalf("EnrollStart: %v", err)
	}
	defer f.dev.Call(fprintd.DeviceIface+".EnrollStop", 0)
	for stage := 1; stage <= 20; stage++ {
		f.send(t, "SCAN "+id)
		s := next(t, status, "EnrollStatus")
		result, _ := s.Body[0].(string)
		done, _ := s.Body[1].(bool)
		switch {
		case result == "enroll-completed" && done:
			return
		case result == "enroll-stage-passed" && !done:
		default:
			t.Fatalf("enrolment, touch %d: %s (done %v)", stage, result, done)
		}
	}
	t.Fatal("enrolment never completed")
}

// claimable shows the reader is free: a client other than the Verifier
// claims and releases it.
func (f *realFprintd) claimable(t *testing.T) {
	t.Helper()
	if err := f.dev.Call(fprintd.DeviceIface+".Claim", 0, f.user).Err; err != nil {
		t.Fatalf("the reader was left claimed: %v", err)
	}
	if err := f.dev.Call(fprintd.DeviceIface+".Release", 0).Err; err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// verifyWith runs Verify while the virtual reader gets cmds, each when
// fprintd says the reader waits for a finger. Not sooner: a command that
// reaches the driver while fprintd is still opening the reader (Claim) is
// taken by the open, which drops it ("Could not process command"), and the
// verification then waits for a finger that never comes.
func (f *realFprintd) verifyWith(t *testing.T, v *fprintd.Verifier, cmds ...string) (fprintd.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var props <-chan *dbus.Signal
	if len(cmds) > 0 {
		props = f.signals(t, "org.freedesktop.DBus.Properties", "PropertiesChanged")
	}
	done := verifyAsync(ctx, v)
	for _, c := range cmds {
		waitFingerNeeded(t, props)
		f.send(t, c)
	}
	got := <-done
	return got.r, got.err
}

func TestRealFprintdWithVirtualReader(t *testing.T) {
	f := startRealFprintd(t)
	v := fprintd.New(notifytest.Connect(t, f.addr), f.user, nil)
	ctx := context.Background()

	if st := v.Probe(ctx); st != fprintd.NothingEnrolled {
		t.Fatalf("Probe before enrolling = %v, want NothingEnrolled", st)
	}
	if _, err := f.verifyWith(t, v); !errors.Is(err, fprintd.ErrNoEnrolledFingers) {
		t.Fatalf("Verify before enrolling: %v, want ErrNoEnrolledFingers", err)
	}
	f.claimable(t)

	f.enroll(t, enrolled, "finger-a")
	if st := v.Probe(ctx); st != fprintd.Ready {
		t.Fatalf("Probe after enrolling = %v, want Ready", st)
	}

	t.Run("the enrolled finger matches", func(t *testing.T) {
		if r, err := f.verifyWith(t, v, "SCAN finger-a"); err != nil || r != fprintd.Match {
			t.Fatalf("%v, %v; want a match", r, err)
		}
		f.claimable(t)
	})
	t.Run("another finger does not match", func(t *testing.T) {
		if r, err := f.verifyWith(t, v, "SCAN finger-b"); err != nil || r != fprintd.NoMatch {
			t.Fatalf("%v, %v; want no match", r, err)
		}
		f.claimable(t)
	})
	// fprintd reports a retry with done=false and restarts the scan
	// itself: the verification goes on to the next touch.
	t.Run("retries then the enrolled finger", func(t *testing.T) {
		if r, err := f.verifyWith(t, v, "RETRY 0", "RETRY 1", "RETRY 2", "RETRY 3", "SCAN finger-a"); err != nil || r != fprintd.Match {
			t.Fatalf("%v, %v; want a match after the retries", r, err)
		}
		f.claimable(t)
	})
	t.Run("retries then another finger", func(t *testing.T) {
		if r, err := f.verifyWith(t, v, "RETRY 1", "SCAN finger-b"); err != nil || r != fprintd.NoMatch {
			t.Fatalf("%v, %v; want no match after the retry", r, err)
		}
		f.claimable(t)
	})
	// The reader's errors (FpDeviceError: 0 general, 5 protocol, 6 data
	// invalid) are no verdict: unavailable, never a match and never a
	// failed attempt.
	for _, code := range []string{"0", "5", "6"} {
		t.Run("reader error "+code, func(t *testing.T) {
			r, err := f.verifyWith(t, v, "ERROR "+code)
			if !errors.Is(err, fprintd.ErrUnavailable) || r == fprintd.Match {
				t.Fatalf("%v, %v; want ErrUnavailable", r, err)
			}
			f.claimable(t)
		})
	}
	t.Run("the reader works after its errors", func(t *testing.T) {
		if r, err := f.verifyWith(t, v, "SCAN finger-a"); err != nil || r != fprintd.Match {
			t.Fatalf("%v, %v; want a match", r, err)
		}
	})
	// The client's CANCEL while fprintd waits for a finger: Verify ends
	// with the context's error and the reader is free for someone else.
	t.Run("cancel while waiting for a finger", func(t *testing.T) {
		props := f.signals(t, "org.freedesktop.DBus.Properties", "PropertiesChanged")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := v.Verify(ctx)
			done <- err
		}()
		waitFingerNeeded(t, props)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Verify after cancel: %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Verify did not return within 10s of its cancel")
		}
		f.claimable(t)
		// fprintd 1.94 answers the VerifyStop of a cancelled
		// verification with VerifyStatus("verify-no-match", done): that
		// answer must neither turn the cancel into a failed attempt
		// (above) nor leak into the next verification, whose enrolled
		// finger matches.
		if r, err := f.verifyWith(t, v, "SCAN finger-a"); err != nil || r != fprintd.Match {
			t.Fatalf("the verification after a cancel: %v, %v; want a match", r, err)
		}
	})
	// Someone else (a login screen, sudo's pam_fprintd) holds the reader:
	// unavailable, not a failed attempt, and their claim is left alone.
	t.Run("reader claimed by someone else", func(t *testing.T) {
		if err := f.dev.Call(fprintd.DeviceIface+".Claim", 0, f.user).Err; err != nil {
			t.Fatalf("Claim: %v", err)
		}
		_, err := f.verifyWith(t, v)
		if !errors.Is(err, fprintd.ErrUnavailable) {
			t.Errorf("Verify while the reader is claimed: %v, want ErrUnavailable", err)
		}
		if err := f.dev.Call(fprintd.DeviceIface+".Release", 0).Err; err != nil {
			t.Fatalf("the other client's claim was taken away: Release: %v", err)
		}
		if r, err := f.verifyWith(t, v, "SCAN finger-a"); err != nil || r != fprintd.Match {
			t.Fatalf("after the other client released: %v, %v; want a match", r, err)
		}
	})
	// Last, as it takes the reader away for good: unplugged while
	// fprintd waits for a finger. The verification ends unavailable
	// (never a verdict), and once released fprintd has no reader.
	t.Run("reader unplugged mid-verification", func(t *testing.T) {
		props := f.signals(t, "org.freedesktop.DBus.Properties", "PropertiesChanged")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done := verifyAsync(ctx, v)
		waitFingerNeeded(t, props)
		f.send(t, "UNPLUG")
		got := <-done
		if !errors.Is(got.err, fprintd.ErrUnavailable) || got.r == fprintd.Match {
			t.Fatalf("Verify when the reader was unplugged: %v, %v; want ErrUnavailable", got.r, got.err)
		}
		// fprintd drops the reader once it is closed, a moment after the
		// Release: until then Probe may still see it (and a Verify is
		// unavailable all the same).
		for deadline := time.Now().Add(10 * time.Second); v.Probe(context.Background()) != fprintd.NoReader; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("Probe still finds a reader 10s after the unplug")
			}
		}
		if _, err := f.verifyWith(t, v); !errors.Is(err, fprintd.ErrUnavailable) {
			t.Errorf("Verify without a reader: %v, want ErrUnavailable", err)
		}
	})
}

// waitFingerNeeded waits until fprintd says the reader waits for a finger
// (its finger-needed property), i.e. the verification is running.
func waitFingerNeeded(t *testing.T, props <-chan *dbus.Signal) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-props:
			if len(s.Body) < 2 {
				continue
			}
			changed, _ := s.Body[1].(map[string]dbus.Variant)
			if v, ok := changed["finger-needed"]; ok && v.Value() == true {
				return
			}
		case <-deadline:
			t.Fatal("fprintd never said the reader needs a finger")
		}
	}
}

type verifyResult struct {
	r   fprintd.Result
	err error
}

// verifyAsync runs v.Verify while the test drives the reader.
func verifyAsync(ctx context.Context, v *fprintd.Verifier) <-chan verifyResult {
	done := make(chan verifyResult, 1)
	go func() {
		r, err := v.Verify(ctx)
		done <- verifyResult{r, err}
	}()
	return done
}
