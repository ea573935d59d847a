package interop

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// cliIn runs the tpm-u2f command line with stdin.
func cliIn(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// sameUserSetup starts a daemon that asks the desktop (a notification
// server answering Allow until told otherwise) and pinentry (answering
// with the contents of the returned file, "1234" at first), and makes one
// passkey, for passkeys.example and dana.
func sameUserSetup(t *testing.T) (ctx context.Context, n *notifytest.Server, sock, pinFile, addr string, c *ctaphid.Client) {
	bus := notifytest.SessionBus(t)
	n = &notifytest.Server{Caps: []string{"actions"}, Answer: "allow", Delay: 20 * time.Millisecond}
	n.Serve(t, bus)
	dir := t.TempDir()
	sock = filepath.Join(dir, "control.sock")
	pinFile = filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("1234"), 0o600)
	addr, _, _, _ = startDaemonEnv(t, t.TempDir(), []string{"DBUS_SESSION_BUS_ADDRESS=" + bus},
		"--tpm", "sim", "--control", sock, "--presence", "dbus", "--pinentry", fakePinentry(t, pinFile))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	c = dial(t, ctx, addr)
	cdh := sha256.Sum256([]byte("mc"))
	mc, _ := ctap2.Marshal(map[int]any{
		1: cdh[:], 2: map[string]any{"id": "passkeys.example"},
		3: map[string]any{"id": []byte("u-1"), "name": "dana", "displayName": "Dana"},
		4: []map[string]any{{"type": "public-key", "alg": -7}}, 7: map[string]bool{"rk": true},
	})
	if rsp, err := c.Call(ctx, ctaphid.CmdCBOR, append([]byte{ctap2.CmdMakeCredential}, mc...)); err != nil || rsp[0] != 0 {
		t.Fatalf("makeCredential rk: %x %v", rsp, err)
	}
	return ctx, n, sock, pinFile, addr, c
}

// names tells whether out shows the passkey's site or account name.
func names(out string) bool {
	return strings.Contains(out, "passkeys.example") || strings.Contains(out, "dana")
}

func lastShown(n *notifytest.Server) string {
	s := n.Shown()
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// TestSameUserProcessWithoutPIN: any process of the user can reach the
// control socket. While no PIN is set, unlocking the key and listing the
// sites and account names of its passkeys need the desktop's Allow, as
// CTAP needs the user's presence; so do deleting a passkey and setting a
// PIN.
func TestSameUserProcessWithoutPIN(t *testing.T) {
	_, n, sock, _, _, _ := sameUserSetup(t)
	locked := func() bool {
		out, _ := cli(t, "status", "--control", sock)
		return strings.Contains(out, "locked (")
	}
	n.SetAnswer("deny")
	cli(t, "lock", "--control", sock)
	if out, code := cli(t, "unlock", "--control", sock); code == 0 || !strings.Contains(out, "not confirmed on the desktop") || !locked() {
		t.Fatalf("unlock denied on the desktop: exit %d\n%s", code, out)
	}
	if !strings.Contains(lastShown(n), "unlock the key") {
		t.Fatalf("no unlock prompt: %q", lastShown(n))
	}
	if out, code := cli(t, "credentials", "list", "--control", sock); code == 0 || names(out) || !strings.Contains(out, "not confirmed on the desktop") {
		t.Fatalf("credentials list denied on the desktop: exit %d\n%s", code, out)
	}
	if !strings.Contains(lastShown(n), "list your passkeys") {
		t.Fatalf("no prompt for the list: %q", lastShown(n))
	}
	n.SetAnswer("allow")
	if out, code := cli(t, "unlock", "--control", sock); code != 0 || locked() {
		t.Fatalf("unlock allowed on the desktop: exit %d\n%s", code, out)
	}
	if out, code := cli(t, "credentials", "list", "--control", sock); code != 0 || !names(out) {
		t.Fatalf("credentials list allowed on the desktop: exit %d\n%s", code, out)
	}
	out, _ := cli(t, "credentials", "list", "--control", sock)
	id := credentialID(t, out)
	n.SetAnswer("deny")
	if out, code := cli(t, "credentials", "delete", id, "--control", sock); code == 0 || !strings.Contains(out, "not confirmed on the desktop") {
		t.Fatalf("delete denied on the desktop: exit %d\n%s", code, out)
	}
	n.SetAnswer("allow")
	if out, _ := cli(t, "credentials", "list", "--control", sock); !names(out) {
		t.Fatalf("a denied delete deleted:\n%s", out)
	}
	// Nor can it set a PIN of its own choosing.
	n.SetAnswer("deny")
	if out, code := cliIn(t, "5678\n", "pin", "set", "--stdin", "--control", sock); code == 0 || !strings.Contains(out, "not confirmed on the desktop") {
		t.Fatalf("pin set denied on the desktop: exit %d\n%s", code, out)
	}
	if out, _ := cli(t, "pin", "status", "--control", sock); !strings.Contains(out, "PIN: not set") {
		t.Fatalf("a denied pin set set a PIN:\n%s", out)
	}
}

// TestSameUserProcessWithPIN: once a PIN is set, listing sites and account
// names needs the PIN (typed into pinentry, or given with --stdin), not
// the desktop's Allow; wrong PINs given there count toward CTAP's three in
// a row; and a re-plug, which opens three more tries, needs the desktop's
// Allow while they wait for it. Deleting needs the PIN and the Allow, and
// changing the PIN the old one and the Allow.
func TestSameUserProcessWithPIN(t *testing.T) {
	ctx, n, sock, pinFile, addr, c := sameUserSetup(t)
	if out, code := cliIn(t, "1234\n", "pin", "set", "--stdin", "--control", sock); code != 0 {
		t.Fatalf("pin set: exit %d\n%s", code, out)
	}
	shown := len(n.Shown())
	os.WriteFile(pinFile, []byte("0000"), 0o600)
	if out, code := cli(t, "credentials", "list", "--control", sock); code == 0 || names(out) || !strings.Contains(out, "wrong PIN; 5 retries left") {
		t.Fatalf("credentials list, wrong PINs in pinentry: exit %d\n%s", code, out)
	}
	if len(n.Shown()) != shown {
		t.Fatalf("a desktop prompt stood in for the PIN: %q", n.Shown()[shown:])
	}
	// Three wrong PINs in a row: the next one is not even checked, over
	// the control socket or over CTAP, until a re-plug.
	if out, code := cliIn(t, "1234\n", "credentials", "list", "--stdin", "--control", sock); code == 0 || names(out) || !strings.Contains(out, "re-plug") {
		t.Fatalf("credentials list, right PIN after three wrong: exit %d\n%s", code, out)
	}
	if st, err := pinCommand(ctx, c, false, "1234"); err != nil || st != ctap2.ErrPINAuthBlocked {
		t.Fatalf("CTAP PIN after three wrong on the control socket: %v %v", st, err)
	}
	if r := pinRetries(t, ctx, c); r != 5 {
		t.Fatalf("retries %d, want 5", r)
	}
	n.SetAnswer("deny")
	// SIGHUP, which any process of the user can send, re-plugs only as
	// the control socket's replug does.
	shown = len(n.Shown())
	if err := syscall.Kill(daemonPID(t, sock), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(n.Shown()) == shown; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP asked nobody")
		}
	}
	if !strings.Contains(lastShown(n), "re-plug") {
		t.Fatalf("SIGHUP: prompt %q", lastShown(n))
	}
	if out, code := cliIn(t, "1234\n", "credentials", "list", "--stdin", "--control", sock); code == 0 || names(out) || !strings.Contains(out, "re-plug") {
		t.Fatalf("a denied SIGHUP opened new PIN tries: exit %d\n%s", code, out)
	}
	if out, code := cli(t, "replug", "--control", sock); code == 0 || !strings.Contains(out, "not confirmed on the desktop") {
		t.Fatalf("replug denied on the desktop: exit %d\n%s", code, out)
	}
	if !strings.Contains(lastShown(n), "re-plug") {
		t.Fatalf("no re-plug prompt: %q", lastShown(n))
	}
	if out, code := cliIn(t, "1234\n", "credentials", "list", "--stdin", "--control", sock); code == 0 || names(out) {
		t.Fatalf("a denied re-plug opened new PIN tries: exit %d\n%s", code, out)
	}
	n.SetAnswer("allow")
	if out, code := cli(t, "replug", "--control", sock); code != 0 {
		t.Fatalf("replug allowed on the desktop: exit %d\n%s", code, out)
	}
	c = dial(t, ctx, addr) // a re-plug ends the CTAPHID channels
	if out, code := cliIn(t, "0000\n", "credentials", "list", "--stdin", "--control", sock); code == 0 || names(out) || !strings.Contains(out, "wrong PIN; 4 retries left") {
		t.Fatalf("credentials list --stdin, wrong PIN: exit %d\n%s", code, out)
	}
	// One wrong PIN is enough: two guesses and a re-plug, again and again,
	// would never meet the limit of three in a row.
	n.SetAnswer("deny")
	if out, code := cli(t, "replug", "--control", sock); code == 0 || !strings.Contains(out, "not confirmed on the desktop") || !strings.Contains(lastShown(n), "after a wrong PIN") {
		t.Fatalf("replug after one wrong PIN, denied on the desktop: exit %d, prompt %q\n%s", code, lastShown(n), out)
	}
	if out, code := cliIn(t, "1234\n", "credentials", "list", "--stdin", "--control", sock); code != 0 || !names(out) {
		t.Fatalf("credentials list --stdin, right PIN: exit %d\n%s", code, out)
	}
	os.WriteFile(pinFile, []byte("1234"), 0o600)
	n.SetAnswer("deny")
	if out, code := cli(t, "credentials", "list", "--control", sock); code != 0 || !names(out) {
		t.Fatalf("credentials list, right PIN in pinentry: exit %d\n%s", code, out)
	}
	// Not waiting for one, a re-plug asks nobody (it gives no new tries).
	if out, code := cli(t, "replug", "--control", sock); code != 0 {
		t.Fatalf("replug with no PIN tries waiting for it: exit %d\n%s", code, out)
	}
	if r := pinRetries(t, ctx, dial(t, ctx, addr)); r != 8 {
		t.Fatalf("retries %d, want 8", r)
	}

	// Deleting needs the PIN and the desktop's Allow; a wrong old PIN
	// given to pin change counts toward the three in a row as well.
	out, _ := cliIn(t, "1234\n", "credentials", "list", "--stdin", "--control", sock)
	id := credentialID(t, out)
	n.SetAnswer("allow")
	shown = len(n.Shown())
	if out, code := cliIn(t, "0000\n", "credentials", "delete", "--stdin", id, "--control", sock); code == 0 || !strings.Contains(out, "wrong PIN; 7 retries left") || len(n.Shown()) != shown {
		t.Fatalf("delete with a wrong PIN: exit %d, %d prompts\n%s", code, len(n.Shown())-shown, out)
	}
	if out, code := cliIn(t, "0000\n5678\n", "pin", "change", "--stdin", "--control", sock); code == 0 || !strings.Contains(out, "wrong PIN; 6 retries left") {
		t.Fatalf("pin change with a wrong PIN: exit %d\n%s", code, out)
	}
	if out, code := cliIn(t, "0000\n", "credentials", "delete", "--stdin", id, "--control", sock); code == 0 || !strings.Contains(out, "re-plug") {
		t.Fatalf("delete with a third wrong PIN: exit %d\n%s", code, out)
	}
	if out, code := cliIn(t, "1234\n5678\n", "pin", "change", "--stdin", "--control", sock); code == 0 || !strings.Contains(out, "re-plug") {
		t.Fatalf("pin change after three wrong PINs: exit %d\n%s", code, out)
	}
	cli(t, "replug", "--control", sock) // allowed
	n.SetAnswer("deny")
	if out, code := cliIn(t, "1234\n", "credentials", "delete", "--stdin", id, "--control", sock); code == 0 || !strings.Contains(out, "not confirmed on the desktop") {
		t.Fatalf("delete with the PIN, denied on the desktop: exit %d\n%s", code, out)
	}
	if out, _ := cliIn(t, "1234\n", "credentials", "list", "--stdin", "--control", sock); !names(out) {
		t.Fatalf("a denied delete deleted:\n%s", out)
	}
	n.SetAnswer("allow")
	if out, code := cliIn(t, "1234\n", "credentials", "delete", "--stdin", id, "--control", sock); code != 0 {
		t.Fatalf("delete with the PIN and the Allow: exit %d\n%s", code, out)
	}
	if out, _ := cliIn(t, "1234\n", "credentials", "list", "--stdin", "--control", sock); names(out) {
		t.Fatalf("still listed after delete:\n%s", out)
	}
	// Knowing the PIN is not enough to change it.
	n.SetAnswer("deny")
	if out, code := cliIn(t, "1234\n5678\n", "pin", "change", "--stdin", "--control", sock); code == 0 || !strings.Contains(out, "not confirmed on the desktop") {
		t.Fatalf("pin change denied on the desktop: exit %d\n%s", code, out)
	}
	if out, code := cliIn(t, "1234\n", "credentials", "list", "--stdin", "--control", sock); code != 0 {
		t.Fatalf("the PIN changed after a denied change: exit %d\n%s", code, out)
	}
}

// daemonPID is the process ID of the daemon serving the control socket,
// as the kernel tells its peer.
func daemonPID(t *testing.T, sock string) int {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cerr != nil {
		t.Fatal(cerr)
	}
	return int(cred.Pid)
}

// credentialID is the ID column of the passkey's line in a list.
func credentialID(t *testing.T, list string) string {
	t.Helper()
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "passkeys.example") {
			return strings.Fields(line)[0]
		}
	}
	t.Fatalf("no passkey in the list:\n%s", list)
	return ""
}
