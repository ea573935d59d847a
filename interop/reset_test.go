package interop

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// copyDir copies the regular files of src into dst (created).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// runFails runs the daemon on state and expects it to refuse to start;
// it returns what the daemon said.
func runFails(t *testing.T, state, spec string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "run", "--transport", "udp:"+freeUDPPort(t),
		"--presence", "always", "--state", state, "--tpm", spec).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the daemon did not refuse to start (%v):\n%s", err, out)
	}
	t.Logf("the daemon refused to start:\n%s", out)
	return string(out)
}

// TestRestoredBackupAfterResetRefused: on swtpm, the daemon registers a
// key; the whole state directory is backed up; authenticatorReset; the
// backup is restored over the state directory. The daemon refuses to
// start and says why and what to do, and the old key handle never signs.
// Then the TPM is cleared (TPM2_Clear) under a good state directory: the
// daemon refuses to start with the primary Name mismatch.
func TestRestoredBackupAfterResetRefused(t *testing.T) {
	sw := tpmtest.StartSWTPM(t)
	state, backup := t.TempDir(), filepath.Join(t.TempDir(), "backup")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := sha256.Sum256([]byte("https://example.com"))

	addr, stop, _ := startDaemonIn(t, state, "--tpm", sw.Spec)
	reg, err := u2fhost.Register(ctx, dial(t, ctx, addr), sha256.Sum256([]byte("r")), app)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	copyDir(t, state, backup)

	addr, stop, _ = startDaemonIn(t, state, "--tpm", sw.Spec)
	c := dial(t, ctx, addr)
	if st, _, err := ctap2Call(ctx, c, ctap2.CmdReset, nil); err != nil || st != ctap2.OK {
		t.Fatalf("reset: %v %v", st, err)
	}
	_, err = u2fhost.Authenticate(ctx, c, sha256.Sum256([]byte("a")), app, reg.KeyHandle, 0x03)
	var se *u2fhost.StatusError
	if !errors.As(err, &se) || se.SW != 0x6a80 {
		t.Fatalf("old key handle after the reset: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "after-reset")
	copyDir(t, state, good)

	// Every file restored from before the reset.
	os.RemoveAll(state)
	copyDir(t, backup, state)
	out := runFails(t, state, sw.Spec)
	for _, says := range []string{"this identity was reset", "restored from a backup", "Move the state directory aside"} {
		if !strings.Contains(out, says) {
			t.Errorf("the daemon's refusal does not say %q:\n%s", says, out)
		}
	}

	// The state after the reset still starts; then the TPM is cleared.
	addr, stop, _ = startDaemonIn(t, good, "--tpm", sw.Spec)
	if _, err := u2fhost.Register(ctx, dial(t, ctx, addr), sha256.Sum256([]byte("r2")), app); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	tr, _, err := tpm.Open(sw.Spec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}.Execute(tr)
	tr.Close()
	if err != nil {
		t.Fatal(err)
	}
	out = runFails(t, good, sw.Spec)
	for _, says := range []string{"storage primary", "the TPM was cleared", "another machine", "answers in its place"} {
		if !strings.Contains(out, says) {
			t.Errorf("the daemon's refusal after TPM2_Clear does not say %q:\n%s", says, out)
		}
	}
}
