package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// desk is a Sway session for a test: a session bus, headless sway, and
// the programs a Sway user adds (mako or dunst, waybar), run as the
// desktop user: nobody when the test runs as root (sway refuses to run
// as root), else the test's own user.
type desk struct {
	dir, bus, runtime, wayland string
	asUser                     []string // the command prefix that runs as the desktop user
}

// startSway starts the bus and sway. It skips the test where sway or the
// desktop programs are not installed (apt-get install sway mako-notifier
// dunst waybar jq).
func startSway(t *testing.T) *desk {
	t.Helper()
	for _, bin := range []string{"dbus-daemon", "sway", "mako", "makoctl", "busctl", "jq", "dunst", "dunstctl", "waybar"} {
		if _, err := exec.LookPath(bin); err != nil {
			tpmtest.SkipMissing(t, bin+" not installed (apt-get install sway mako-notifier jq dunst waybar)")
		}
	}
	d := &desk{}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		if _, err := exec.LookPath("setpriv"); err != nil {
			tpmtest.SkipMissing(t, "setpriv not installed: sway does not run as root")
		}
		uid, gid = 65534, 65534
		d.asUser = []string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups"}
	}
	// Not t.TempDir: its parents are 0700 root, and the desktop user must
	// get through to its runtime directory and the bus socket.
	dir, err := os.MkdirTemp("", "tpm-u2f-sway")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d.dir, d.runtime = dir, filepath.Join(dir, "run")
	for _, sub := range []string{"run", "home"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, sub), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A session bus that lets the test (root) and the desktop user
	// (nobody) both connect, as one user's bus lets that user.
	sock := filepath.Join(dir, "bus.sock")
	d.bus = "unix:path=" + sock
	d.write(t, "bus.conf", `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>`+d.bus+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`)
	d.daemon(t, exec.Command("dbus-daemon", "--config-file="+filepath.Join(dir, "bus.conf"), "--nofork"))
	d.waitFor(t, "the bus socket", func() bool { _, err := os.Stat(sock); return err == nil })

	d.write(t, "sway.conf", "output HEADLESS-1 resolution 1280x800\n")
	d.start(t, "sway", "-c", filepath.Join(dir, "sway.conf"))
	d.waitFor(t, "sway's Wayland socket", func() bool {
		m, _ := filepath.Glob(filepath.Join(d.runtime, "wayland-[0-9]"))
		if len(m) > 0 {
			d.wayland = filepath.Base(m[0])
		}
		return len(m) > 0
	})
	return d
}

func (d *desk) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(d.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// cmd is a command run as the desktop user in the session.
func (d *desk) cmd(name string, args ...string) *exec.Cmd {
	env := []string{"env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + filepath.Join(d.dir, "home"),
		"XDG_RUNTIME_DIR=" + d.runtime, "DBUS_SESSION_BUS_ADDRESS=" + d.bus, "WAYLAND_DISPLAY=" + d.wayland,
		"XDG_CURRENT_DESKTOP=sway", "GDK_BACKEND=wayland",
		// headless sway: no GPU, no input devices
		"WLR_BACKENDS=headless", "WLR_LIBINPUT_NO_DEVICES=1", "WLR_RENDERER=pixman"}
	argv := append(append(append([]string{}, d.asUser...), env...), append([]string{name}, args...)...)
	return exec.Command(argv[0], argv[1:]...)
}

// start runs name in the session until the test ends (or stop is called).
func (d *desk) start(t *testing.T, name string, args ...string) (stop func()) {
	t.Helper()
	return d.daemon(t, d.cmd(name, args...))
}

func (d *desk) daemon(t *testing.T, c *exec.Cmd) (stop func()) {
	t.Helper()
	log, err := os.Create(filepath.Join(d.dir, filepath.Base(c.Args[len(c.Args)-1])+"."+strconv.Itoa(len(c.Args))+".log"))
	if err != nil {
		t.Fatal(err)
	}
	c.Stdout, c.Stderr = log, log
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	stop = func() {
		if !done {
			done = true
			c.Process.Kill()
			c.Wait()
			log.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

// run runs a command as the desktop user and returns its output.
func (d *desk) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := d.cmd(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (d *desk) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			logs, _ := filepath.Glob(filepath.Join(d.dir, "*.log"))
			var b strings.Builder
			for _, l := range logs {
				c, _ := os.ReadFile(l)
				fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(l), c)
			}
			t.Fatalf("timed out waiting for %s\n%s", what, b.String())
		}
	}
}

func hasOwner(conn *dbus.Conn, name string) bool {
	var has bool
	return conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has) == nil && has
}

// confirm asks as the daemon asks (presence.DBus) and, once the
// notification is up (shown says so), answers with answer; it returns
// what the prompt decided.
func confirm(t *testing.T, d *desk, conn *dbus.Conn, shown func() bool, answer func()) error {
	t.Helper()
	p := presence.NewDBus(conn, 20*time.Second, nil)
	done := make(chan error, 1)
	go func() {
		done <- p.Confirm(context.Background(), presence.Request{Operation: "sign in", RelyingParty: "example.org"})
	}()
	d.waitFor(t, "the notification", shown)
	answer()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("the prompt was not decided")
		return nil
	}
}

// TestSway: what docs/install.md's Sway notes say, on a real Sway session
// (headless sway 1.7, Debian 12): before the user adds a notification
// daemon and a bar, the doctor says so; mako and dunst each offer the
// actions the prompt needs, and the answer is chosen from their menu or
// command (makoctl invoke / makoctl menu / dunstctl context), while
// dismissing the notification denies; waybar's tray module is the tray
// host.
func TestSway(t *testing.T) {
	d := startSway(t)
	conn, err := dbus.Connect(d.bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e := Default("/dev/tpmrm0", "", "pinentry")
	e.SessionBus = func() (*dbus.Conn, error) { return dbus.Connect(d.bus) }
	ctx := context.Background()

	// Sway alone: neither a notification server nor a tray.
	if r := checkNotifications(ctx, e); r.OK || !strings.Contains(r.Detail, "no notification server") {
		t.Errorf("sway without a notification daemon: %+v", r)
	}
	if r := checkTrayHost(ctx, e); r.OK || !strings.Contains(r.Detail, "no StatusNotifierItem host") {
		t.Errorf("sway without a bar: %+v", r)
	}
	if err := confirm(t, d, conn, func() bool { return true }, func() {}); !errors.Is(err, presence.ErrNoActions) && err == nil {
		t.Errorf("a prompt with no notification server: %v, want a refusal", err)
	}

	// mako.
	stopMako := d.start(t, "mako")
	d.waitFor(t, "mako on the bus", func() bool { return hasOwner(conn, "org.freedesktop.Notifications") })
	if r := checkNotifications(ctx, e); !r.OK {
		t.Errorf("mako: %+v", r)
	}
	makoShown := func() bool {
		out, err := d.cmd("makoctl", "list").Output()
		return err == nil && strings.Contains(string(out), "example.org asks to sign in")
	}
	for _, c := range []struct {
		how    []string
		answer error
	}{
		{[]string{"makoctl", "invoke", "allow"}, nil},
		{[]string{"makoctl", "menu", "grep", "-m1", "-x", "Allow"}, nil}, // a menu program that picks Allow
		{[]string{"makoctl", "invoke", "deny"}, presence.ErrDenied},
		{[]string{"makoctl", "dismiss"}, presence.ErrDenied},
	} {
		err := confirm(t, d, conn, makoShown, func() { d.run(t, c.how[0], c.how[1:]...) })
		if !errors.Is(err, c.answer) {
			t.Errorf("mako, %s: %v, want %v", strings.Join(c.how, " "), err, c.answer)
		}
		// mako does not close a notification whose action it invoked:
		// the daemon closes its prompt after every answer, Deny included.
		d.waitFor(t, "the answered prompt to go", func() bool { return !makoShown() })
	}
	stopMako()
	d.waitFor(t, "mako to leave the bus", func() bool { return !hasOwner(conn, "org.freedesktop.Notifications") })

	// dunst, with a menu program (its dmenu setting) that picks Allow.
	pick := d.write(t, "pick-allow", "#!/bin/sh\nexec grep -m1 '^#Allow '\n")
	d.write(t, "dunstrc", "[global]\n    dmenu = "+pick+"\n")
	d.start(t, "dunst", "-config", filepath.Join(d.dir, "dunstrc"))
	d.waitFor(t, "dunst on the bus", func() bool { return hasOwner(conn, "org.freedesktop.Notifications") })
	if r := checkNotifications(ctx, e); !r.OK {
		t.Errorf("dunst: %+v", r)
	}
	dunstShown := func() bool {
		out, err := d.cmd("dunstctl", "count", "displayed").Output()
		return err == nil && strings.TrimSpace(string(out)) != "0"
	}
	for _, c := range []struct {
		how    []string
		answer error
	}{
		{[]string{"dunstctl", "context"}, nil},
		{[]string{"dunstctl", "close"}, presence.ErrDenied},
	} {
		err := confirm(t, d, conn, dunstShown, func() { d.run(t, c.how[0], c.how[1:]...) })
		if !errors.Is(err, c.answer) {
			t.Errorf("dunst, %s: %v, want %v", strings.Join(c.how, " "), err, c.answer)
		}
		d.run(t, "dunstctl", "close-all")
		d.waitFor(t, "dunst to clear", func() bool { return !dunstShown() })
	}

	// waybar with its tray module.
	d.write(t, "waybar.json", `{"layer": "top", "position": "top", "modules-right": ["tray"]}`)
	d.start(t, "waybar", "-c", filepath.Join(d.dir, "waybar.json"))
	d.waitFor(t, "waybar's tray", func() bool { return hasOwner(conn, "org.kde.StatusNotifierWatcher") })
	if r := checkTrayHost(ctx, e); !r.OK {
		t.Errorf("waybar: %+v", r)
	}
}
