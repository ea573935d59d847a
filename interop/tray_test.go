package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/tray/traytest"
)

// TestTrayClicksOnTheDaemon: the real daemon's tray menu, on a real
// session bus. A click from the tray host is the user's own: Unlock needs
// no desktop Allow (the PIN through pinentry where one is set), nor does
// Re-plug after a wrong PIN. The same clicks from another connection on
// the bus do nothing.
func TestTrayClicksOnTheDaemon(t *testing.T) {
	bus := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"actions"}, Answer: "deny", Delay: 20 * time.Millisecond}
	n.Serve(t, bus)
	host := notifytest.Connect(t, bus)
	w := traytest.ServeWatcher(t, host)
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("1234"), 0o600)
	startDaemonEnv(t, t.TempDir(), []string{"DBUS_SESSION_BUS_ADDRESS=" + bus},
		"--tpm", "sim", "--control", sock, "--presence", "dbus", "--pinentry", fakePinentry(t, pinFile))
	var item string
	eventually(t, "tray item registered", func() bool {
		item, _ = w.Registered()
		return item != ""
	})
	menuPath := traytest.MenuPath(t, host, item)
	click := func(conn *dbus.Conn, label string) {
		t.Helper()
		traytest.Click(t, conn, item, menuPath, label)
	}
	locked := func() bool {
		out, _ := cli(t, "status", "--control", sock)
		return strings.Contains(out, "locked (")
	}

	title := func() string {
		v, err := host.Object(item, "/StatusNotifierItem").GetProperty("org.kde.StatusNotifierItem.Title")
		if err != nil {
			return ""
		}
		s, _ := v.Value().(string)
		return s
	}
	cli(t, "lock", "--control", sock)
	// The menu enables Unlock once the tray has seen the lock.
	eventually(t, "the tray shows the lock", func() bool { return title() == "tpm-u2f: locked" })
	spoofer := notifytest.Connect(t, bus)
	click(spoofer, "Unlock")
	time.Sleep(300 * time.Millisecond) // a click that got through is carried out by now
	if !locked() {
		t.Fatal("a click from another connection unlocked the key")
	}
	prompts := len(n.Shown())
	click(host, "Unlock")
	eventually(t, "unlocked by the tray host's click", func() bool { return !locked() })
	if len(n.Shown()) != prompts {
		t.Fatalf("the tray's Unlock asked the desktop: %q", n.Shown()[prompts:])
	}

	// With a PIN: a wrong one given on the control socket makes
	// `tpm-u2f replug` ask the desktop (denied here); the tray's Re-plug
	// does not ask, and after it nothing is pending.
	n.SetAnswer("allow")
	if out, code := cliIn(t, "1234\n", "pin", "set", "--stdin", "--control", sock); code != 0 {
		t.Fatalf("pin set: exit %d\n%s", code, out)
	}
	n.SetAnswer("deny")
	cliIn(t, "0000\n", "credentials", "list", "--stdin", "--control", sock)
	if out, code := cli(t, "replug", "--control", sock); code == 0 {
		t.Fatalf("replug after a wrong PIN, denied on the desktop: exit 0\n%s", out)
	}
	click(spoofer, "Re-plug")
	time.Sleep(300 * time.Millisecond)
	if out, code := cli(t, "replug", "--control", sock); code == 0 {
		t.Fatalf("a Re-plug click from another connection re-plugged:\n%s", out)
	}
	click(host, "Re-plug")
	eventually(t, "re-plugged by the tray host's click", func() bool {
		_, code := cli(t, "replug", "--control", sock) // asks nobody once the count is 0
		return code == 0
	})

	// Unlock from the tray with a PIN set: pinentry, not the desktop.
	cli(t, "lock", "--control", sock)
	eventually(t, "the tray shows the lock", func() bool { return title() == "tpm-u2f: locked" })
	prompts = len(n.Shown())
	click(host, "Unlock")
	eventually(t, "unlocked with the PIN", func() bool { return !locked() })
	if len(n.Shown()) != prompts {
		t.Fatalf("the tray's Unlock asked the desktop: %q", n.Shown()[prompts:])
	}
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTrayHostStartsAfterTheDaemon: at login the panel may start after
// the user unit. The daemon started on a bus without a tray host shows
// its icon once one appears, and again when the panel restarts.
func TestTrayHostStartsAfterTheDaemon(t *testing.T) {
	bus := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"actions"}, Answer: "allow"}
	n.Serve(t, bus)
	sock := filepath.Join(t.TempDir(), "control.sock")
	startDaemonEnv(t, t.TempDir(), []string{"DBUS_SESSION_BUS_ADDRESS=" + bus},
		"--tpm", "sim", "--control", sock, "--presence", "dbus")
	for range 2 { // the panel starts, then restarts
		host := notifytest.Connect(t, bus)
		w := traytest.ServeWatcher(t, host)
		var item string
		eventually(t, "tray item registered with a panel that came later", func() bool {
			item, _ = w.Registered()
			return item != ""
		})
		traytest.MenuPath(t, host, item)
		host.Close()
	}
}
