package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/tpm-u2f/tpm-u2f/control"
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// pinInput is where the PIN is read from: the terminal (without echo), or
// with --stdin one line per PIN. A variable for tests.
var pinInput io.Reader = os.Stdin

// pinCommand: tpm-u2f pin set | change | status. It talks to the running
// daemon through the control socket, or, when none runs, to the TPM
// directly with run's --tpm and --state. The PIN never leaves this
// process: the daemon gets CTAP's pinHash, LEFT(SHA-256(PIN), 16).
func pinCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, fs, socket, err := subcommand("pin", args, stderr, "set | change | status [--stdin] [--control PATH] [--tpm SPEC] [--state DIR]", "set", "change", "status")
	if err != nil {
		return err
	}
	fromStdin := fs.Bool("stdin", false, "read the PIN(s) from standard input, one per line (for scripts; change: the old PIN, then the new one)")
	tpmSpec := fs.String("tpm", defaultTPM(), "when no daemon runs: the TPM, as for run --tpm; env TPM_U2F_TPM")
	state := fs.String("state", defaultStateDir(), "when no daemon runs: the state directory, as for run --state")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	b, err := connectPIN(socket, *tpmSpec, *state, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	set, retries, err := b.status()
	if err != nil {
		return err
	}
	in := &pinReader{ctx: ctx, r: pinInput, stdin: *fromStdin, prompt: stderr}
	switch sub {
	case "status":
		fmt.Fprintln(stdout, "PIN: "+describePIN(set, retries))
	case "set":
		if set {
			return control.ErrPINSet
		}
		h, err := in.newPIN(minPINLengthOf(b))
		if err != nil {
			return err
		}
		defer clear(h)
		if !b.direct() {
			fmt.Fprintln(stderr, "tpm-u2f: allow setting the PIN in the desktop prompt")
		}
		if err := b.set(h); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "PIN set")
	case "change":
		if !set {
			return control.ErrPINNotSet
		}
		if retries == 0 {
			return control.ErrPINBlocked
		}
		old, err := in.read("Current PIN: ")
		if err != nil {
			return err
		}
		if len(old) == 0 {
			return errors.New("no PIN given; nothing was changed")
		}
		oldHash := pinHash(old)
		defer clear(oldHash)
		h, err := in.newPIN(minPINLengthOf(b))
		if err != nil {
			return err
		}
		defer clear(h)
		if !b.direct() {
			fmt.Fprintln(stderr, "tpm-u2f: allow changing the PIN in the desktop prompt")
		}
		if _, err := b.change(oldHash, h); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "PIN changed")
	}
	if sub != "status" {
		set, retries, err := b.status()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "PIN: "+describePIN(set, retries))
	}
	if b.direct() {
		verb := map[string]string{"status": "read from", "set": "set in", "change": "changed in"}[sub]
		fmt.Fprintf(stdout, "(no daemon running: %s the TPM directly)\n", verb)
	}
	return nil
}

func describePIN(set bool, retries int) string {
	switch {
	case !set:
		return "not set"
	case retries == 0:
		return "set, blocked (no retries left): only a reset (tpm-u2f reset) helps"
	case retries == 1:
		return "set, 1 retry left"
	}
	return fmt.Sprintf("set, %d retries left", retries)
}

// pinHash is CTAP's pinHash of p, LEFT(SHA-256(p), 16). It zeroes p.
func pinHash(p []byte) []byte {
	sum := sha256.Sum256(p)
	h := make([]byte, control.PINHashSize)
	copy(h, sum[:])
	clear(sum[:])
	pin.Zero(p)
	return h
}

// validationError says in words why pin.Validate refused a new PIN.
func validationError(err error) error {
	switch {
	case errors.Is(err, pin.ErrTooShort):
		return fmt.Errorf("PIN too short: at least %d characters", pin.MinLength)
	case errors.Is(err, pin.ErrTooLong):
		return fmt.Errorf("PIN too long: at most %d bytes", pin.MaxBytes)
	case errors.Is(err, pin.ErrInvalidUTF8):
		return errors.New("PIN is not valid UTF-8")
	}
	return err
}

// pinReader reads PINs: from the terminal without echo, or with stdin
// set, one line at a time from r (unbuffered, so that each read takes
// exactly one line and nothing of the next is left in a buffer).
type pinReader struct {
	ctx    context.Context
	r      io.Reader
	stdin  bool
	prompt io.Writer
}

// maxPINLine bounds a line read as a PIN; pin.MaxBytes is far below.
const maxPINLine = 256

// newPIN reads and validates a new PIN (twice from a terminal), and
// returns its pinHash.
func (r *pinReader) newPIN(minLength int) ([]byte, error) {
	p, err := r.read("New PIN: ")
	if err != nil {
		return nil, err
	}
	if err := pin.Validate(p); err != nil {
		pin.Zero(p)
		return nil, validationError(err)
	}
	if err := checkMinLength(p, minLength); err != nil {
		pin.Zero(p)
		return nil, err
	}
	if !r.stdin {
		again, err := r.read("New PIN again: ")
		if err != nil {
			pin.Zero(p)
			return nil, err
		}
		same := string(p) == string(again)
		pin.Zero(again)
		if !same {
			pin.Zero(p)
			return nil, errors.New("the two PINs differ; nothing was changed")
		}
	}
	return pinHash(p), nil
}

// read returns one PIN, without its line end. The caller zeroes it.
func (r *pinReader) read(prompt string) ([]byte, error) {
	if r.stdin {
		p, err := readLine(r.r)
		if err != nil {
			return nil, fmt.Errorf("reading the PIN from standard input: %w", err)
		}
		return p, nil
	}
	f, ok := r.r.(*os.File)
	if !ok || !isTerminal(f) {
		return nil, errors.New("standard input is not a terminal: pass --stdin to read the PIN from it")
	}
	fmt.Fprint(r.prompt, prompt)
	p, err := readNoEcho(r.ctx, f)
	fmt.Fprintln(r.prompt)
	return p, err
}

// readLine reads up to a newline (or the end of input), a byte at a time.
func readLine(r io.Reader) ([]byte, error) {
	var buf [maxPINLine + 1]byte
	defer clear(buf[:])
	n := 0
	for {
		if n == len(buf) {
			return nil, errors.New("line too long")
		}
		m, err := r.Read(buf[n : n+1])
		if m == 1 {
			if buf[n] == '\n' {
				break
			}
			n++
			continue
		}
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return nil, errors.New("no PIN (end of input)")
			}
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if n > 0 && buf[n-1] == '\r' {
		n--
	}
	out := make([]byte, n)
	copy(out, buf[:n])
	return out, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readNoEcho reads a line from the terminal f with echo off, restoring
// the terminal afterwards, also when ctx ends (Ctrl-C) in the middle.
func readNoEcho(ctx context.Context, f *os.File) ([]byte, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ISIG
	t.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	type result struct {
		p   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := readLine(f)
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		return r.p, r.err
	case <-ctx.Done():
		go func() { // the line typed after all, if any, is not kept
			if r := <-done; r.p != nil {
				pin.Zero(r.p)
			}
		}()
		return nil, ctx.Err()
	}
}

// pinBackend is where PIN commands go: the daemon, or the TPM itself.
type pinBackend interface {
	status() (set bool, retries int, err error)
	set(hash []byte) error
	change(old, new []byte) (retries int, err error)
	direct() bool
	close()
}

// connectPIN reaches the daemon on its control socket, or, when none
// answers there, opens the TPM directly.
func connectPIN(socket func() (string, error), tpmSpec, state string, stderr io.Writer) (pinBackend, error) {
	path, perr := socket()
	if perr == nil {
		_, err := control.Call(path, control.Request{Command: "pin-status"})
		if !errors.Is(err, control.ErrNoDaemon) {
			// Running (whatever it answered: status() asks again).
			return daemonPIN(path), nil
		}
	}
	b, err := openDirectPIN(tpmSpec, state, stderr)
	if err != nil {
		where := "no control socket"
		if perr == nil {
			where = "no control socket at " + path
		}
		return nil, fmt.Errorf("the daemon is not running (%s), and the TPM could not be used directly: %w", where, err)
	}
	return b, nil
}

// daemonPIN is the running daemon at a control socket path.
type daemonPIN string

func (d daemonPIN) status() (bool, int, error) {
	rsp, err := control.Call(string(d), control.Request{Command: "pin-status"})
	if err != nil {
		return rsp.PINSet, 0, err
	}
	r := 0
	if rsp.PINRetries != nil {
		r = *rsp.PINRetries
	}
	return rsp.PINSet, r, nil
}

func (d daemonPIN) set(h []byte) error {
	req := control.Request{Command: "pin-set", NewPINHash: h}
	_, err := control.Call(string(d), req)
	return err
}

func (d daemonPIN) change(old, new []byte) (int, error) {
	req := control.Request{Command: "pin-change", PINHash: old, NewPINHash: new}
	rsp, err := control.Call(string(d), req)
	r := 0
	if rsp.PINRetries != nil {
		r = *rsp.PINRetries
	}
	return r, err
}

func (daemonPIN) direct() bool { return false }
func (daemonPIN) close()       {}

// directPIN is the TPM opened by this process, the daemon not running.
type directPIN struct {
	engine *tpm.Engine
	done   func()
}

// openDirectPIN opens the TPM and the identity in state as run does, and
// holds the state directory's lock meanwhile, so that no daemon starts on
// it and no daemon without a reachable control socket is bypassed.
func openDirectPIN(spec, state string, stderr io.Writer) (*directPIN, error) {
	if state == "" {
		return nil, errors.New("--state: no state directory (set XDG_STATE_HOME or HOME, or pass --state)")
	}
	idPath := filepath.Join(state, "identity.json")
	if _, err := os.Stat(idPath); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no key in %s yet (no identity.json): start the daemon once, or pass the --state it uses", state)
	}
	unlock, err := lockStateDir(state)
	if err != nil {
		return nil, err
	}
	t, backend, err := tpm.Open(spec)
	if err != nil {
		unlock()
		return nil, err
	}
	closeAll := func() { t.Close(); unlock() }
	if backend.Volatile {
		closeAll()
		return nil, errors.New("the embedded simulator (--tpm sim) keeps nothing after its process ends: start the daemon and run this against it")
	}
	id, err := tpm.LoadIdentity(idPath)
	if err != nil {
		closeAll()
		return nil, err
	}
	log, _ := newLogger(stderr, "warn")
	persist := func(id tpm.Identity) error { return tpm.SaveIdentity(idPath, id) }
	engine, id, err := tpm.New(t, id, tpm.Options{Logger: log, FlushStale: backend.Bare, Persist: persist})
	if err != nil {
		closeAll()
		return nil, err
	}
	if err := persist(id); err != nil {
		engine.Close()
		closeAll()
		return nil, fmt.Errorf("save identity: %w", err)
	}
	return &directPIN{engine: engine, done: func() { engine.Close(); closeAll() }}, nil
}

func (d *directPIN) status() (bool, int, error) {
	st, err := d.engine.PINStatus()
	return st.Set, st.Retries, pinError(err, st.Retries)
}

func (d *directPIN) set(h []byte) error { return pinError(d.engine.SetPIN(h), 0) }

func (d *directPIN) change(old, new []byte) (int, error) {
	r, err := d.engine.ChangePIN(old, new)
	return r, pinError(err, r)
}

func (*directPIN) direct() bool { return true }
func (d *directPIN) close()     { d.done() }

// controlPINError maps package tpm's PIN errors to control's, which the
// control socket and the command line show.
func controlPINError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tpm.ErrWrongPIN):
		return control.ErrWrongPIN
	case errors.Is(err, tpm.ErrPINLost):
		return fmt.Errorf("%w (%v)", control.ErrPINBlocked, tpm.ErrPINLost)
	case errors.Is(err, tpm.ErrPINBlocked):
		return control.ErrPINBlocked
	case errors.Is(err, tpm.ErrPINNotSet):
		return control.ErrPINNotSet
	case errors.Is(err, tpm.ErrPINSet):
		return control.ErrPINSet
	}
	return err
}

// pinError is controlPINError with the retries left in a wrong PIN's
// text, as the daemon's answer has them.
func pinError(err error, retries int) error {
	return control.PINError(controlPINError(err), retries)
}
