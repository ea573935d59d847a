package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
	"github.com/tpm-u2f/tpm-u2f/tray/traytest"

	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
)

// xfcePanelConfig is one panel along the top edge holding only the
// system tray (as scripts/tray-screenshot.sh draws it).
const xfcePanelConfig = `<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="32"/>
      <property name="plugin-ids" type="array"><value type="int" value="1"/></property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray">
      <property name="square-icons" type="bool" value="true"/>
    </property>
  </property>
</channel>
`

// TestXfcePanelMenu: a real tray host, xfce4-panel under Xvfb, shows the
// daemon's icon; a right-click and the keyboard choose Lock, then Unlock,
// in the menu the panel draws, and both count: the panel calls the menu
// from the connection that owns the StatusNotifierWatcher. The same
// click sent by another process (dbus-send) is ignored. It runs where
// Xvfb, xfce4-panel and xdotool are installed (apt-get install xvfb
// xfce4-panel xfconf xdotool) and is skipped elsewhere.
func TestXfcePanelMenu(t *testing.T) {
	for _, bin := range []string{"Xvfb", "xfce4-panel", "xdotool", "dbus-send"} {
		if _, err := exec.LookPath(bin); err != nil {
			tpmtest.SkipMissing(t, bin+" not installed (apt-get install xvfb xfce4-panel xfconf xdotool)")
		}
	}
	binary(t) // built before HOME and XDG_CACHE_HOME change (Go's build cache lives there)
	home := t.TempDir()
	for k, v := range map[string]string{"HOME": home, "XDG_CONFIG_HOME": home + "/.config",
		"XDG_CACHE_HOME": home + "/.cache", "XDG_DATA_HOME": home + "/.local/share", "XDG_RUNTIME_DIR": home + "/run",
		"XDG_CONFIG_DIRS": "", "SESSION_MANAGER": "", "DESKTOP_SESSION": "", "XDG_CURRENT_DESKTOP": ""} {
		t.Setenv(k, v)
	}
	conf := filepath.Join(home, ".config", "xfce4", "xfconf", "xfce-perchannel-xml")
	os.MkdirAll(conf, 0o700)
	os.MkdirAll(home+"/run", 0o700)
	if err := os.WriteFile(filepath.Join(conf, "xfce4-panel.xml"), []byte(xfcePanelConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	d := 120
	for ; d < 200; d++ {
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", d)); os.IsNotExist(err) {
			if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", d)); os.IsNotExist(err) {
				break
			}
		}
	}
	display := fmt.Sprintf(":%d", d)
	t.Setenv("DISPLAY", display)
	background(t, "Xvfb", display, "-screen", "0", "800x300x24", "-nolisten", "tcp")
	eventually(t, "Xvfb", func() bool { _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", d)); return err == nil })
	// Started after HOME and DISPLAY are set: xfconfd is bus-activated and
	// inherits the bus's environment.
	bus := notifytest.SessionBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus)
	background(t, "xfce4-panel", "--disable-wm-check")
	conn := notifytest.Connect(t, bus)
	owner := func(name string) string {
		var o string
		conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, name).Store(&o)
		return o
	}
	eventually(t, "the panel's StatusNotifierWatcher", func() bool { return owner("org.kde.StatusNotifierWatcher") != "" })

	sock := filepath.Join(t.TempDir(), "control.sock")
	startDaemonEnv(t, t.TempDir(), nil, "--tpm", "sim", "--control", sock)
	var item string
	eventually(t, "the item registered", func() bool {
		v, err := conn.Object("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher").GetProperty("org.kde.StatusNotifierWatcher.RegisteredStatusNotifierItems")
		items, _ := v.Value().([]string)
		if err != nil || len(items) == 0 {
			return false
		}
		item = owner(strings.SplitN(items[0], "/", 2)[0])
		return item != ""
	})
	state := func() string {
		out, _ := cli(t, "status", "--control", sock)
		if strings.Contains(out, "locked (") {
			return "locked"
		}
		return "unlocked"
	}
	title := func() string {
		v, err := conn.Object(item, "/StatusNotifierItem").GetProperty("org.kde.StatusNotifierItem.Title")
		if err != nil {
			return ""
		}
		s, _ := v.Value().(string)
		return s
	}
	// menuFirst opens the panel's menu for the icon at the panel's left end
	// and activates its first enabled entry (the title line is disabled):
	// Lock while unlocked, Unlock while locked.
	menuFirst := func(want string) {
		t.Helper()
		for try := 0; try < 3 && state() != want; try++ {
			exec.Command("xdotool", "key", "Escape").Run()
			exec.Command("xdotool", "mousemove", "16", "16", "click", "3").Run()
			time.Sleep(time.Second)
			exec.Command("xdotool", "key", "Down").Run()
			time.Sleep(200 * time.Millisecond)
			exec.Command("xdotool", "key", "Return").Run()
			for end := time.Now().Add(2 * time.Second); state() != want && time.Now().Before(end); {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if state() != want {
			t.Fatalf("the panel's menu did not make the key %s", want)
		}
	}
	eventually(t, "the icon drawn", func() bool { return title() == "tpm-u2f: unlocked" })
	menuFirst("locked")
	eventually(t, "the tray shows the lock", func() bool { return title() == "tpm-u2f: locked" })

	// Another process sends the same click as the panel would.
	id := traytest.ItemID(t, conn, item, "/StatusNotifierItem/menu", "Unlock")
	out, err := exec.Command("dbus-send", "--session", "--print-reply", "--dest="+item, "/StatusNotifierItem/menu",
		"com.canonical.dbusmenu.Event", fmt.Sprintf("int32:%d", id), "string:clicked", "variant:string:", "uint32:0").CombinedOutput()
	if err != nil {
		t.Fatalf("dbus-send: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	if state() != "locked" {
		t.Fatal("a click sent by dbus-send unlocked the key")
	}
	menuFirst("unlocked")
}

// background starts a program for the test and ends it afterwards.
func background(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}
