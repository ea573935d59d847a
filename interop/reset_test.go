package interop

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
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

// remaining is getInfo's remainingDiscoverableCredentials.
func remaining(t *testing.T, ctx context.Context, c *ctaphid.Client) uint64 {
	t.Helper()
	st, body, err := ctap2Call(ctx, c, ctap2.CmdGetInfo, nil)
	var info ctap2.Info
	if err != nil || st != ctap2.OK || cbor.Unmarshal(body, &info) != nil || info.RemainingDiscoverable == nil {
		t.Fatalf("getInfo: %v %v", st, err)
	}
	return *info.RemainingDiscoverable
}

// TestResetKilledBySIGKILL runs authenticatorReset on the daemon (swtpm)
// and kills it with SIGKILL after a random 0–25 ms, trial after trial,
// then restarts it on the same state: the daemon always starts, and
// either the old key handle signs and the passkey is still counted, or
// the handle is unknown and the store is empty (every slot free).
func TestResetKilledBySIGKILL(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	app := sha256.Sum256([]byte("https://example.com"))
	rng := rand.New(rand.NewPCG(13, uint64(time.Now().UnixNano())))
	n := trials(12)
	old, fresh := 0, 0
	for i := range n {
		addr, _, kill := startDaemonIn(t, state, "--tpm", spec)
		c := dial(t, ctx, addr)
		reg, err := u2fhost.Register(ctx, c, sha256.Sum256([]byte(fmt.Sprint("r", i))), app)
		if err != nil {
			t.Fatal(err)
		}
		cdh := sha256.Sum256([]byte(fmt.Sprint("mc ", i)))
		st, _, err := ctap2Call(ctx, c, ctap2.CmdMakeCredential, map[int]any{1: cdh[:],
			2: map[string]any{"id": "example.com"}, 3: map[string]any{"id": []byte(fmt.Sprint("user ", i)), "name": "u"},
			4: []map[string]any{{"type": "public-key", "alg": -7}}, 7: map[string]bool{"rk": true}})
		if err != nil || st != ctap2.OK {
			t.Fatalf("trial %d: makeCredential: %v %v", i, st, err)
		}
		before := remaining(t, ctx, c)
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		done := make(chan struct{})
		go func() { ctap2Call(rctx, c, ctap2.CmdReset, nil); close(done) }()
		delay := time.Duration(rng.IntN(25_000)) * time.Microsecond
		time.Sleep(delay)
		kill()
		rcancel()
		<-done

		addr, stop, _ := startDaemonIn(t, state, "--tpm", spec)
		c = dial(t, ctx, addr)
		_, err = u2fhost.Authenticate(ctx, c, sha256.Sum256([]byte(fmt.Sprint("a", i))), app, reg.KeyHandle, 0x03)
		left := remaining(t, ctx, c)
		var se *u2fhost.StatusError
		switch {
		case err == nil:
			old++
			if left != before {
				t.Fatalf("trial %d (killed after %v): the old key signs but %d slots are free, %d before the reset", i, delay, left, before)
			}
		case errors.As(err, &se) && se.SW == 0x6a80:
			fresh++
			if left != 256 {
				t.Fatalf("trial %d (killed after %v): the old key is gone but only %d slots are free", i, delay, left)
			}
		default:
			t.Fatalf("trial %d: the old key handle after the killed reset: %v", i, err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d resets killed by SIGKILL: %d kept the old identity, %d finished the new one", n, old, fresh)
}
