package interop

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/control"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary(t), args...).CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestCLIAgainstDaemon: tpm-u2f status/lock/unlock/replug through the
// control socket of a running daemon; a locked token refuses to sign.
func TestCLIAgainstDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	if out, code := cli(t, "status", "--control", sock); code != 3 || !strings.Contains(out, "not running") {
		t.Fatalf("status without a daemon: exit %d\n%s", code, out)
	}
	addr, _, _, _ := startDaemonEnv(t, t.TempDir(), nil, "--tpm", "sim", "--ctap2", "--control", sock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := sha256.Sum256([]byte("https://example.com"))
	c := dial(t, ctx, addr)
	reg, err := u2fhost.Register(ctx, c, [32]byte{1}, app)
	if err != nil {
		t.Fatal(err)
	}

	out, code := cli(t, "status", "--control", sock)
	if code != 0 || !strings.Contains(out, "unlocked") || !strings.Contains(out, "replay store: healthy") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	t.Logf("tpm-u2f status:\n%s", out)
	out, code = cli(t, "status", "--json", "--control", sock)
	var st control.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Transport == "" {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}

	if out, code := cli(t, "lock", "--control", sock); code != 0 {
		t.Fatalf("lock: exit %d %s", code, out)
	}
	short, cancelShort := context.WithTimeout(ctx, 700*time.Millisecond)
	_, err = u2fhost.Authenticate(short, c, [32]byte{2}, app, reg.KeyHandle, 0x03)
	cancelShort()
	if err == nil {
		t.Fatal("a locked token signed")
	}
	if out, _ := cli(t, "status", "--control", sock); !strings.Contains(out, "locked (") {
		t.Fatalf("status after lock:\n%s", out)
	}
	cli(t, "unlock", "--control", sock)
	if _, err := u2fhost.Authenticate(ctx, c, [32]byte{3}, app, reg.KeyHandle, 0x03); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	if out, code := cli(t, "replug", "--control", sock); code != 0 {
		t.Fatalf("replug: exit %d %s", code, out)
	}
	if out, code := cli(t, "frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d %s", code, out)
	}

	// A passkey made over CTAP2 shows up in `credentials list`, and goes.
	cdh := sha256.Sum256([]byte("mc"))
	mc, _ := ctap2.Marshal(map[int]any{
		1: cdh[:], 2: map[string]any{"id": "passkeys.example"},
		3: map[string]any{"id": []byte("u-1"), "name": "dana", "displayName": "Dana"},
		4: []map[string]any{{"type": "public-key", "alg": -7}}, 7: map[string]bool{"rk": true},
	})
	if rsp, err := c.Call(ctx, ctaphid.CmdCBOR, append([]byte{ctap2.CmdMakeCredential}, mc...)); err != nil || rsp[0] != 0 {
		t.Fatalf("makeCredential rk: %x %v", rsp, err)
	}
	out, code = cli(t, "credentials", "list", "--control", sock)
	if code != 0 || !strings.Contains(out, "passkeys.example") || !strings.Contains(out, "dana (Dana)") {
		t.Fatalf("credentials list: exit %d\n%s", code, out)
	}
	t.Logf("tpm-u2f credentials list:\n%s", out)
	var id string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "passkeys.example") {
			id = strings.Fields(line)[0]
		}
	}
	if out, code := cli(t, "credentials", "delete", id[:8], "--control", sock); code != 0 {
		t.Fatalf("credentials delete: exit %d %s", code, out)
	}
	if out, _ := cli(t, "credentials", "list", "--control", sock); !strings.Contains(out, "no discoverable credentials") {
		t.Fatalf("after delete:\n%s", out)
	}

	// reset, confirmed with --yes: the U2F credential from before is gone.
	if out, code := cli(t, "reset", "--yes", "--control", sock); code != 0 || !strings.Contains(out, "reset") {
		t.Fatalf("reset: exit %d %s", code, out)
	}
	_, err = u2fhost.Authenticate(ctx, c, [32]byte{4}, app, reg.KeyHandle, 0x03)
	var se *u2fhost.StatusError
	if !errors.As(err, &se) || se.SW != 0x6a80 {
		t.Fatalf("a credential from before the reset: %v", err)
	}
}

// TestDestructiveCommandsNeedTheDesktop: any process of the user can reach
// the control socket, so reset and delete also need an Allow on the
// desktop. Here the notification server answers Deny: nothing changes.
func TestDestructiveCommandsNeedTheDesktop(t *testing.T) {
	bus := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"actions"}, Answer: "deny", Delay: 50 * time.Millisecond}
	n.Serve(t, bus)
	sock := filepath.Join(t.TempDir(), "control.sock")
	addr, _, _, _ := startDaemonEnv(t, t.TempDir(), []string{"DBUS_SESSION_BUS_ADDRESS=" + bus},
		"--tpm", "sim", "--control", sock, "--presence", "dbus")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dial(t, ctx, addr)
	app := sha256.Sum256([]byte("https://example.com"))
	// Registration needs an Allow too; answer this one with Allow.
	n.SetAnswer("allow")
	reg, err := u2fhost.Register(ctx, c, [32]byte{1}, app)
	if err != nil {
		t.Fatal(err)
	}
	n.SetAnswer("deny")
	out, code := cli(t, "reset", "--yes", "--control", sock)
	if code == 0 || !strings.Contains(out, "not confirmed on the desktop") {
		t.Fatalf("reset denied on the desktop: exit %d\n%s", code, out)
	}
	shown := n.Shown()
	if len(shown) == 0 || !strings.Contains(shown[len(shown)-1], "reset the key") {
		t.Fatalf("no reset prompt: %q", shown)
	}
	n.SetAnswer("allow")
	if _, err := u2fhost.Authenticate(ctx, c, [32]byte{2}, app, reg.KeyHandle, 0x03); err != nil {
		t.Fatalf("the credential did not survive a denied reset: %v", err)
	}
}

// fakePinentry is a pinentry program (Assuan over stdin/stdout) that
// answers GETPIN with the contents of pinFile: a stand-in for the
// desktop's pinentry-gnome3, which needs a display.
func fakePinentry(t *testing.T, pinFile string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pinentry")
	script := "#!/bin/sh\necho 'OK Pleased to meet you'\nwhile read -r line; do\n  case \"$line\" in\n" +
		"    GETPIN) echo \"D $(cat " + pinFile + ")\"; echo OK ;;\n" +
		"    BYE) echo OK; exit 0 ;;\n    *) echo OK ;;\n  esac\ndone\n"
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUnlockAsksForThePIN: with a PIN set, unlocking (tray or CLI) asks
// through pinentry and the TPM checks the answer; three wrong answers cost
// three retries, leave the key locked and, as three wrong PINs over CTAP
// do, end the tries until a re-plug.
func TestUnlockAsksForThePIN(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("0000"), 0o600)
	startDaemonEnv(t, t.TempDir(), nil, "--tpm", "sim", "--control", sock, "--pinentry", fakePinentry(t, pinFile))
	set := exec.Command(binary(t), "pin", "set", "--stdin", "--control", sock)
	set.Stdin = strings.NewReader("1234\n")
	if out, err := set.CombinedOutput(); err != nil {
		t.Fatalf("pin set: %v\n%s", err, out)
	}
	cli(t, "lock", "--control", sock)
	out, code := cli(t, "unlock", "--control", sock)
	if code == 0 || !strings.Contains(out, "wrong PIN; 5 retries left") {
		t.Fatalf("unlock with wrong PINs: exit %d\n%s", code, out)
	}
	if out, _ := cli(t, "status", "--control", sock); !strings.Contains(out, "locked (") {
		t.Fatalf("unlocked by wrong PINs:\n%s", out)
	}
	os.WriteFile(pinFile, []byte("1234"), 0o600)
	if out, code := cli(t, "unlock", "--control", sock); code == 0 || !strings.Contains(out, "re-plug") {
		t.Fatalf("unlock with the right PIN before a re-plug: exit %d\n%s", code, out)
	}
	if out, code := cli(t, "replug", "--control", sock); code != 0 {
		t.Fatalf("replug: exit %d\n%s", code, out)
	}
	if out, code := cli(t, "unlock", "--control", sock); code != 0 {
		t.Fatalf("unlock with the right PIN: exit %d\n%s", code, out)
	}
	out, _ = cli(t, "status", "--control", sock)
	if strings.Contains(out, "locked (") || !strings.Contains(out, "8 retries") {
		t.Fatalf("after unlocking:\n%s", out)
	}
}
