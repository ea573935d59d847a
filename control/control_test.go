package control

import (
	"context"
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
)

type fake struct {
	mu     sync.Mutex
	locked bool
	replug int
}

func (f *fake) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Status{Version: "test", Locked: f.locked, ReplayHealthy: true}
}
func (f *fake) Lock()         { f.mu.Lock(); f.locked = true; f.mu.Unlock() }
func (f *fake) Unlock() error { f.mu.Lock(); f.locked = false; f.mu.Unlock(); return nil }
func (f *fake) Replug() error { f.mu.Lock(); f.replug++; f.mu.Unlock(); return nil }
func (f *fake) Credentials() ([]Credential, error) {
	return []Credential{{ID: "ab12", RPID: "example.org", UserName: "alice"}}, nil
}
func (f *fake) DeleteCredential(id string) error {
	if id != "ab12" {
		return errors.New("no such credential")
	}
	return nil
}
func (f *fake) Reset() error { return nil }

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
