package control

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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

type fake struct {
	mu     sync.Mutex
	locked bool
	replug int
	// The PIN: a hash and the retries left, like the TPM keeps them.
	pin     []byte
	retries int
	seen    [][]byte // every hash the handler was given, to check zeroing
}

func (f *fake) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Status{Version: "test", Locked: f.locked, ReplayHealthy: true}
}
func (f *fake) Lock()         { f.mu.Lock(); f.locked = true; f.mu.Unlock() }
func (f *fake) Unlock() error { f.mu.Lock(); f.locked = false; f.mu.Unlock(); return nil }
func (f *fake) Replug() error { f.mu.Lock(); f.replug++; f.mu.Unlock(); return nil }
func (f *fake) Credentials(pinHash []byte) ([]Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pinHash != nil {
		f.seen = append(f.seen, pinHash)
	}
	return []Credential{{ID: "ab12", RPID: "example.org", UserName: "alice"}}, nil
}
func (f *fake) DeleteCredential(id string, pinHash []byte) error {
	if id != "ab12" {
		return errors.New("no such credential")
	}
	return nil
}
func (f *fake) Reset() error { return nil }

func (f *fake) PINStatus() (bool, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pin != nil && f.retries == 0 {
		return true, 0, ErrPINBlocked
	}
	return f.pin != nil, f.retries, nil
}

func (f *fake) SetPIN(h []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, h)
	if f.pin != nil {
		return ErrPINSet
	}
	f.pin, f.retries = bytes.Clone(h), 8
	return nil
}

func (f *fake) ChangePIN(old, new []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, old, new)
	switch {
	case f.pin == nil:
		return 0, ErrPINNotSet
	case f.retries == 0:
		return 0, ErrPINBlocked
	case !bytes.Equal(old, f.pin):
		f.retries--
		if f.retries == 0 {
			return 0, ErrPINBlocked
		}
		return f.retries, ErrWrongPIN
	}
	f.pin, f.retries = bytes.Clone(new), 8
	return 8, nil
}

func serve(t *testing.T, path string, h Handler) {
	t.Helper()
	s, err := Listen(path, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestCommands(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "control.sock")
	f := &fake{}
	serve(t, path, f)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory mode %v", fi.Mode())
	}
	rsp, err := Call(path, Request{Command: "status"})
	if err != nil || rsp.Status == nil || rsp.Status.Locked {
		t.Fatalf("status: %+v %v", rsp, err)
	}
	if _, err := Call(path, Request{Command: "lock"}); err != nil {
		t.Fatal(err)
	}
	if rsp, _ := Call(path, Request{Command: "status"}); !rsp.Status.Locked {
		t.Fatal("lock did not lock")
	}
	Call(path, Request{Command: "unlock"})
	Call(path, Request{Command: "replug"})
	if f.Status().Locked || f.replug != 1 {
		t.Fatalf("unlock/replug not carried out: %+v %d", f.Status(), f.replug)
	}
	if rsp, err := Call(path, Request{Command: "credentials"}); err != nil || len(rsp.Credentials) != 1 || rsp.Credentials[0].UserName != "alice" {
		t.Fatalf("credentials: %+v %v", rsp, err)
	}
	// The PIN for listing is a pinHash, like pin-change's, or none.
	if _, err := Call(path, Request{Command: "credentials", PINHash: hash(1)[:5]}); err == nil || !strings.Contains(err.Error(), "16 bytes") {
		t.Fatalf("credentials with a short PIN hash: %v", err)
	}
	if _, err := Call(path, Request{Command: "credentials", PINHash: hash(1)}); err != nil || len(f.seen) != 1 || !bytes.Equal(f.seen[0], make([]byte, PINHashSize)) {
		t.Fatalf("credentials with a PIN hash: %v, the handler saw %x (zeroed after use?)", err, f.seen)
	}
	if _, err := Call(path, Request{Command: "delete", ID: "ffff"}); err == nil {
		t.Fatal("deleting an unknown credential succeeded")
	}
	if _, err := Call(path, Request{Command: "frobnicate"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	// Garbage on the socket gets an error, not a crash.
	c, _ := net.Dial("unix", path)
	c.Write([]byte("{{{{\n"))
	var r Response
	json.NewDecoder(c).Decode(&r)
	c.Close()
	if r.OK || r.Error == "" {
		t.Fatalf("malformed request answered %+v", r)
	}
}

func hash(b byte) []byte { return bytes.Repeat([]byte{b}, PINHashSize) }

func TestPIN(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	f := &fake{}
	serve(t, path, f)
	rsp, err := Call(path, Request{Command: "pin-status"})
	if err != nil || rsp.PINSet || rsp.PINRetries != nil {
		t.Fatalf("pin-status with no PIN: %+v %v", rsp, err)
	}
	if _, err := Call(path, Request{Command: "pin-change", PINHash: hash(1), NewPINHash: hash(2)}); err == nil || err.Error() != ErrPINNotSet.Error() {
		t.Fatalf("pin-change with no PIN: %v", err)
	}
	if _, err := Call(path, Request{Command: "pin-set", NewPINHash: []byte("short")}); err == nil || !strings.Contains(err.Error(), "16 bytes") {
		t.Fatalf("pin-set with a malformed hash: %v", err)
	}
	if _, err := Call(path, Request{Command: "pin-set", NewPINHash: hash(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := Call(path, Request{Command: "pin-set", NewPINHash: hash(2)}); err == nil || !strings.Contains(err.Error(), "pin change") {
		t.Fatalf("pin-set over a PIN: %v", err)
	}
	rsp, err = Call(path, Request{Command: "pin-status"})
	if err != nil || !rsp.PINSet || rsp.PINRetries == nil || *rsp.PINRetries != 8 {
		t.Fatalf("pin-status: %+v %v", rsp, err)
	}
	rsp, err = Call(path, Request{Command: "pin-change", PINHash: hash(9), NewPINHash: hash(2)})
	if err == nil || err.Error() != "wrong PIN; 7 retries left" || rsp.PINRetries == nil || *rsp.PINRetries != 7 {
		t.Fatalf("wrong PIN: %+v %v", rsp, err)
	}
	if _, err := Call(path, Request{Command: "pin-change", PINHash: hash(1), NewPINHash: hash(2)}); err != nil {
		t.Fatal(err)
	}
	if rsp, _ := Call(path, Request{Command: "pin-status"}); *rsp.PINRetries != 8 {
		t.Fatalf("retries after a change: %d", *rsp.PINRetries)
	}
	for left := 7; left >= 1; left-- {
		want := fmt.Sprintf("wrong PIN; %d retries left", left)
		if left == 1 {
			want = "wrong PIN; 1 retry left"
		}
		if _, err := Call(path, Request{Command: "pin-change", PINHash: hash(9), NewPINHash: hash(3)}); err == nil || err.Error() != want {
			t.Fatalf("got %v, want %q", err, want)
		}
	}
	if _, err := Call(path, Request{Command: "pin-change", PINHash: hash(9), NewPINHash: hash(3)}); err == nil || err.Error() != "PIN blocked: only a reset (tpm-u2f reset) helps" {
		t.Fatalf("blocked: %v", err)
	}
	if _, err := Call(path, Request{Command: "pin-status"}); err == nil || !strings.Contains(err.Error(), "PIN blocked") {
		t.Fatalf("pin-status when blocked: %v", err)
	}
	// Every hash the handler saw is zeroed once the request is done (the
	// response may reach us just before).
	deadline := time.Now().Add(2 * time.Second)
	for {
		f.mu.Lock()
		dirty := 0
		for _, h := range f.seen {
			if !bytes.Equal(h, make([]byte, len(h))) {
				dirty++
			}
		}
		f.mu.Unlock()
		if dirty == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d PIN hashes were not zeroed after their request", dirty)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPINHashNeverInResponse: whatever happens, the raw answer on the
// socket carries no PIN hash, in any encoding.
func TestPINHashNeverInResponse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	serve(t, path, &fake{})
	secret, other := hash(0xA5), hash(0x5A)
	b64 := base64.StdEncoding.EncodeToString
	for _, req := range []string{
		`{"command":"pin-set","new_pin_hash":"` + b64(secret) + `"}` + "\n",
		`{"command":"pin-set","new_pin_hash":"` + b64(other) + `"}` + "\n", // ErrPINSet
		`{"command":"pin-change","pin_hash":"` + b64(other) + `","new_pin_hash":"` + b64(secret) + `"}` + "\n",
		`{"command":"pin-change","pin_hash":"` + b64(other[:5]) + `","new_pin_hash":"` + b64(secret) + `"}` + "\n",
		`{"command":"pin-change","pin_hash":"` + b64(secret) + `","new_pin_hash":"` + b64(other) + `"}` + "\n",
		`{"command":"credentials","pin_hash":"` + b64(secret) + `"}` + "\n",
		`{"command":"pin-status"}`, // no newline after it: answered all the same
	} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var raw bytes.Buffer
		raw.ReadFrom(c)
		c.Close()
		var rsp Response
		if err := json.Unmarshal(raw.Bytes(), &rsp); err != nil {
			t.Fatalf("answer to %s: %v: %q", req, err, raw.String())
		}
		if rsp.Error == "" && !rsp.OK {
			t.Fatalf("empty answer: %q", raw.String())
		}
		for _, h := range [][]byte{secret, other} {
			for _, enc := range []string{string(h), fmt.Sprintf("%x", h), fmt.Sprintf("%X", h), b64(h), b64(h)[:8], fmt.Sprint(h)} {
				if strings.Contains(raw.String(), enc) {
					t.Fatalf("answer to %s contains a PIN hash (%q): %s", req, enc, raw.String())
				}
			}
		}
	}
}

func TestStaleAndLiveSockets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	os.WriteFile(path, nil, 0o600) // left by a crashed daemon
	serve(t, path, &fake{})
	if _, err := Call(path, Request{Command: "status"}); err != nil {
		t.Fatalf("after replacing a stale socket: %v", err)
	}
	if _, err := Listen(path, &fake{}, nil); err == nil {
		t.Fatal("a second daemon took over a live socket")
	}
	if _, err := Call(filepath.Join(t.TempDir(), "none.sock"), Request{Command: "status"}); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no daemon: %v", err)
	}
}

// TestOtherUserRefused connects as another user (nobody). The socket's
// mode already keeps other users out; here it is opened up on purpose, so
// that the peer-credential check alone must refuse them.
func TestOtherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	// A directory and a copy of this test binary the other user can reach
	// (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "control-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "control.sock")
	f := &fake{}
	serve(t, path, f)
	os.Chmod(path, 0o666)
	cmd := exec.Command(bin, "-test.run", "^TestHelperClient$")
	cmd.Env = append(os.Environ(), "CONTROL_HELPER_SOCKET="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "REFUSED: permission denied") {
		t.Fatalf("another user was served:\n%s", out)
	}
	if f.Status().Locked {
		t.Fatal("another user's lock command was carried out")
	}
}

// TestHelperClient is the other user's process of TestOtherUserRefused.
func TestHelperClient(t *testing.T) {
	path := os.Getenv("CONTROL_HELPER_SOCKET")
	if path == "" {
		t.Skip("helper for TestOtherUserRefused")
	}
	_, err := Call(path, Request{Command: "lock"})
	fmt.Printf("REFUSED: %v\n", err)
}
