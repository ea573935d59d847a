package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tpm-u2f/tpm-u2f/control"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

func TestPINHash(t *testing.T) {
	p := []byte("1234")
	h := pinHash(p)
	// LEFT(SHA-256("1234"), 16)
	if got := hex.EncodeToString(h); got != "03ac674216f3e15c761ee1a5e255f067" {
		t.Fatalf("pinHash(1234) = %s", got)
	}
	if !bytes.Equal(p, make([]byte, 4)) {
		t.Fatal("pinHash did not zero the PIN")
	}
}

func TestReadLine(t *testing.T) {
	r := strings.NewReader("1234\r\nsecond\nlast")
	for _, want := range []string{"1234", "second", "last"} {
		got, err := readLine(r)
		if err != nil || string(got) != want {
			t.Fatalf("readLine = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := readLine(r); err == nil {
		t.Fatal("readLine at the end of input succeeded")
	}
	if _, err := readLine(strings.NewReader(strings.Repeat("x", maxPINLine+10))); err == nil {
		t.Fatal("an overlong line was accepted")
	}
}

func TestPINErrors(t *testing.T) {
	for _, c := range []struct {
		err     error
		retries int
		want    string
	}{
		{tpm.ErrWrongPIN, 5, "wrong PIN; 5 retries left"},
		{tpm.ErrWrongPIN, 1, "wrong PIN; 1 retry left"},
		{errors.Join(tpm.ErrWrongPIN, errors.New("x")), 0, "wrong PIN"},
		{tpm.ErrPINBlocked, 0, "PIN blocked: only a reset (tpm-u2f reset) helps"},
		{tpm.ErrPINLost, 0, "PIN blocked: only a reset (tpm-u2f reset) helps (tpm: the PIN's NV index is gone from the TPM)"},
		{tpm.ErrPINNotSet, 0, control.ErrPINNotSet.Error()},
		{tpm.ErrPINSet, 0, control.ErrPINSet.Error()},
	} {
		if got := pinError(c.err, c.retries); got == nil || got.Error() != c.want {
			t.Errorf("pinError(%v, %d) = %v, want %q", c.err, c.retries, got, c.want)
		}
	}
	if pinError(nil, 8) != nil {
		t.Error("pinError(nil) is not nil")
	}
}

// TestReadNoEcho types a PIN into a pseudo-terminal: it is read, not
// echoed, and the terminal's echo is back on afterwards.
func TestReadNoEcho(t *testing.T) {
	master, slave := openPTY(t)
	r := &pinReader{ctx: context.Background(), r: slave, prompt: io.Discard}
	type result struct {
		p   []byte
		err error
	}
	done := make(chan result, 1)
	go func() { p, err := r.read("PIN: "); done <- result{p, err} }()
	// Typed once echo is off (typed before, the terminal would echo it
	// as any terminal does).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err == nil && tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("echo was never turned off")
		}
	}
	master.Write([]byte("s3cret-pin\n"))
	res := <-done
	if res.err != nil || string(res.p) != "s3cret-pin" {
		t.Fatalf("read %q, %v", res.p, res.err)
	}
	master.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	echo, _ := io.ReadAll(master)
	if bytes.Contains(echo, []byte("s3cret")) {
		t.Fatalf("the PIN was echoed: %q", echo)
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Fatalf("echo not restored: %v", err)
	}

	// Interrupted (Ctrl-C cancels Main's context): echo comes back too.
	ctx, cancel := context.WithCancel(context.Background())
	r = &pinReader{ctx: ctx, r: slave, prompt: io.Discard}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := r.read("PIN: "); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted read: %v", err)
	}
	if tio, _ := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS); tio.Lflag&unix.ECHO == 0 {
		t.Fatal("echo not restored after an interrupted read")
	}
	master.Write([]byte("\n")) // ends the abandoned read
}

func TestNotATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &pinReader{ctx: context.Background(), r: f, prompt: io.Discard}
	if _, err := r.read("PIN: "); err == nil || !strings.Contains(err.Error(), "--stdin") {
		t.Fatalf("read from a file without --stdin: %v", err)
	}
}

func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	// Non-blocking, so that the runtime poller (and read deadlines)
	// handle the master.
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}
