package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// machine is a fake machine in a temporary directory: device nodes are
// plain files, sysfs a tree of uevent files, and who may open what a set.
type machine struct {
	dir     string
	denied  map[string]bool
	outputs map[string]string // "flatpak list ..." -> stdout
	have    map[string]bool   // programs on PATH
}

func newMachine(t *testing.T) *machine {
	return &machine{dir: t.TempDir(), denied: map[string]bool{}, outputs: map[string]string{}, have: map[string]bool{}}
}

func (m *machine) file(t *testing.T, rel, content string) string {
	t.Helper()
	p := filepath.Join(m.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (m *machine) env(bus func() (*dbus.Conn, error)) *Env {
	if bus == nil {
		bus = func() (*dbus.Conn, error) { return nil, errors.New("no session bus") }
	}
	return &Env{
		UHID: filepath.Join(m.dir, "dev/uhid"), TPM: filepath.Join(m.dir, "dev/tpmrm0"),
		SysHidraw: filepath.Join(m.dir, "sys/class/hidraw"), Dev: filepath.Join(m.dir, "dev"),
		HIDID: "0003:000015D9:00000A37", Pinentry: "pinentry",
		Access: func(p string) error {
			if m.denied[p] {
				return fs.ErrPermission
			}
			return nil
		},
		SessionBus: bus,
		LookPath: func(name string) (string, error) {
			if m.have[name] {
				return filepath.Join(m.dir, "usr/bin", name), nil // of this fake machine, not the real one
			}
			return "", errors.New("not found")
		},
		Output: func(_ context.Context, name string, args ...string) ([]byte, error) {
			out, ok := m.outputs[name+" "+strings.Join(args, " ")]
			if !ok {
				return nil, errors.New("no such output")
			}
			return []byte(out), nil
		},
	}
}

func byName(rs []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

func TestBareMachineSaysWhatToFix(t *testing.T) {
	m := newMachine(t)
	rs := byName(Run(context.Background(), m.env(nil)))
	for _, name := range []string{"uhid module", "TPM device", "daemon", "key's hidraw node", "session bus"} {
		if r := rs[name]; r.OK || !r.Blocking || r.Fix == "" {
			t.Errorf("%s: %+v, want a blocking FIX with a command", name, r)
		}
	}
	if !strings.Contains(rs["uhid module"].Fix, "modprobe uhid") {
		t.Errorf("uhid fix: %q", rs["uhid module"].Fix)
	}
	if r := rs["pinentry"]; r.OK || r.Blocking || !strings.Contains(r.Fix, "apt install pinentry") {
		t.Errorf("pinentry: %+v, want a WARN with the install command", r)
	}
	if !Blocked(Run(context.Background(), m.env(nil))) {
		t.Error("a bare machine is not reported blocked")
	}
}

func TestDevicesPresentAndAccessible(t *testing.T) {
	m := newMachine(t)
	uhid := m.file(t, "dev/uhid", "")
	tpmDev := m.file(t, "dev/tpmrm0", "")
	m.file(t, "sys/class/hidraw/hidraw3/device/uevent", "DRIVER=hid-generic\nHID_ID=0003:000015D9:00000A37\nHID_NAME=tpm-u2f security key\n")
	m.file(t, "sys/class/hidraw/hidraw0/device/uevent", "HID_ID=0003:0000046D:0000C52B\n")
	hidraw := m.file(t, "dev/hidraw3", "")
	m.have["pinentry"] = true
	rs := byName(Run(context.Background(), m.env(nil)))
	for _, name := range []string{"uhid module", "/dev/uhid access", "TPM device", "TPM access", "key's hidraw node", "pinentry"} {
		if !rs[name].OK {
			t.Errorf("%s: %+v, want OK", name, rs[name])
		}
	}
	if !strings.Contains(rs["key's hidraw node"].Detail, "hidraw3") {
		t.Errorf("hidraw: %q, want hidraw3 (the key's, not the mouse's)", rs["key's hidraw node"].Detail)
	}
	// The same nodes, but not for this user.
	m.denied[uhid], m.denied[tpmDev], m.denied[hidraw] = true, true, true
	rs = byName(Run(context.Background(), m.env(nil)))
	for name, want := range map[string]string{"/dev/uhid access": "usermod -aG tpm-u2f", "TPM access": "usermod -aG", "key's hidraw node": "udevadm trigger"} {
		if r := rs[name]; r.OK || !r.Blocking || !strings.Contains(r.Fix, want) {
			t.Errorf("%s: %+v, want a FIX with %q", name, r, want)
		}
	}
}

func TestFlatpakAndSnapBrowsers(t *testing.T) {
	m := newMachine(t)
	m.have["flatpak"], m.have["snap"] = true, true
	m.outputs["flatpak list --app --columns=application"] = "org.gnome.Maps\norg.mozilla.firefox\ncom.google.Chrome\n"
	m.outputs["flatpak info --show-permissions org.mozilla.firefox"] = "[Context]\nshared=network;ipc;\ndevices=dri;\n"
	m.outputs["flatpak info --show-permissions com.google.Chrome"] = "[Context]\ndevices=all;\n"
	m.outputs["snap list"] = "Name     Version  Rev\ncore22   2024     1\nchromium 120.0    2700\n"
	rs := byName(Run(context.Background(), m.env(nil)))
	if r := rs["Flatpak browsers"]; r.OK || r.Blocking || r.Fix != "flatpak override --user --device=all org.mozilla.firefox" {
		t.Errorf("flatpak: %+v", r)
	}
	if r := rs["snap browsers"]; r.OK || !strings.Contains(r.Detail, "chromium") {
		t.Errorf("snap: %+v", r)
	}
	m.outputs["flatpak info --show-permissions org.mozilla.firefox"] = "[Context]\ndevices=dri;all;\n"
	m.outputs["snap list"] = "Name Version\ncore22 2024\n"
	rs = byName(Run(context.Background(), m.env(nil)))
	if r := rs["Flatpak browsers"]; !r.OK {
		t.Errorf("flatpak with device access: %+v", r)
	}
	if r := rs["snap browsers"]; !r.Skipped {
		t.Errorf("no snap browser: %+v", r)
	}
}

// The TPM check against real TPMs: swtpm answers with P-256 and a recent
// revision; a socket nobody listens on is a FIX.
func TestTPMCapabilities(t *testing.T) {
	m := newMachine(t)
	e := m.env(nil)
	e.TPM = tpmtest.SWTPM(t)
	e.OpenTPM = func(spec string) (transport.TPMCloser, error) { t, _, err := tpm.Open(spec); return t, err }
	r := checkTPMCapabilities(context.Background(), e)
	if !r.OK || !strings.Contains(r.Detail, "P-256") {
		t.Errorf("swtpm: %+v", r)
	}
	e.TPM = "unix:" + filepath.Join(m.dir, "nobody.sock")
	if r := checkTPMCapabilities(context.Background(), e); r.OK {
		t.Errorf("no TPM: %+v", r)
	}
}

// The desktop checks against a real session bus: a notification server
// with and without buttons, a tray host or none.
func TestDesktopOnARealSessionBus(t *testing.T) {
	addr := notifytest.SessionBus(t)
	bus := func() (*dbus.Conn, error) { return dbus.Connect(addr) }
	m := newMachine(t)
	rs := byName(Run(context.Background(), m.env(bus)))
	if !rs["session bus"].OK || rs["notification server"].OK || rs["tray host"].OK {
		t.Errorf("bare bus: %+v %+v %+v", rs["session bus"], rs["notification server"], rs["tray host"])
	}
	(&notifytest.Server{Caps: []string{"body"}}).Serve(t, addr)
	if r := checkNotifications(context.Background(), m.env(bus)); r.OK || !strings.Contains(r.Detail, "cannot show Allow/Deny") {
		t.Errorf("server without actions: %+v", r)
	}
	addr2 := notifytest.SessionBus(t)
	bus2 := func() (*dbus.Conn, error) { return dbus.Connect(addr2) }
	(&notifytest.Server{Caps: []string{"actions", "body"}}).Serve(t, addr2)
	watcher := notifytest.Connect(t, addr2)
	if _, err := watcher.RequestName("org.kde.StatusNotifierWatcher", 0); err != nil {
		t.Fatal(err)
	}
	rs = byName(Run(context.Background(), m.env(bus2)))
	if !rs["notification server"].OK || !rs["tray host"].OK {
		t.Errorf("full desktop: %+v %+v", rs["notification server"], rs["tray host"])
	}
}

func TestOutputForPeopleAndScripts(t *testing.T) {
	rs := []Result{{Name: "a", OK: true, Detail: "fine"}, {Name: "b", Blocking: true, Detail: "broken", Fix: "do x\ndo y"}, {Name: "c", Detail: "meh", Fix: "z"}, {Name: "d", Skipped: true, Detail: "n/a"}}
	var b bytes.Buffer
	Print(&b, rs)
	want := "OK   a: fine\nFIX  b: broken\n       do x\n       do y\nWARN c: meh\n       z\nSKIP d: n/a\n"
	if b.String() != want {
		t.Errorf("Print:\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := PrintJSON(&b, rs); err != nil {
		t.Fatal(err)
	}
	var back []Result
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back) != 4 || !back[1].Blocking || back[1].Fix != "do x\ndo y" {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
}
