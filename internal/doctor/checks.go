package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"
)

// Env is what the checks look at. Default fills it for this machine;
// tests point it elsewhere.
type Env struct {
	UHID      string // the uhid device node
	TPM       string // the daemon's --tpm (a device path, or swtpm/sim)
	SysHidraw string // /sys/class/hidraw
	Dev       string // /dev
	// HIDID is the key's HID_ID as the kernel writes it in uevent.
	HIDID    string
	Control  string // the control socket, "" when unknown
	Pinentry string // the pinentry program
	// Access is access(2) with the effective IDs (W_OK|R_OK).
	Access func(path string) error
	// OpenTPM opens the TPM the daemon uses.
	OpenTPM func(spec string) (transport.TPMCloser, error)
	// Status asks the running daemon for its status.
	Status     func(controlPath string) error
	SessionBus func() (*dbus.Conn, error)
	LookPath   func(string) (string, error)
	// Output runs a command (flatpak, snap) and returns its standard
	// output; ctx ends a command that hangs (Ctrl-C on doctor).
	Output func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Default is the environment of this machine for a daemon run with the
// given --tpm, control socket and --pinentry.
func Default(tpmSpec, control, pinentry string) *Env {
	return &Env{
		UHID: "/dev/uhid", TPM: tpmSpec, SysHidraw: "/sys/class/hidraw", Dev: "/dev",
		HIDID: "0003:000015D9:00000A37", Control: control, Pinentry: pinentry,
		Access: func(p string) error {
			return unix.Faccessat(unix.AT_FDCWD, p, unix.R_OK|unix.W_OK, unix.AT_EACCESS)
		},
		SessionBus: func() (*dbus.Conn, error) { return dbus.ConnectSessionBus() },
		LookPath:   exec.LookPath,
		Output: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).Output()
		},
	}
}

var checks = []check{
	{"uhid module", true, checkUHIDModule},
	{"/dev/uhid access", true, checkUHIDAccess},
	{"TPM device", true, checkTPMDevice},
	{"TPM access", true, checkTPMAccess},
	{"TPM capabilities", true, checkTPMCapabilities},
	{"daemon", true, checkDaemon},
	{"key's hidraw node", true, checkHidraw},
	{"session bus", true, checkSessionBus},
	{"notification server", false, checkNotifications},
	{"tray host", false, checkTrayHost},
	{"pinentry", false, checkPinentry},
	{"Flatpak browsers", false, checkFlatpak},
	{"snap browsers", false, checkSnap},
}

const moduleFix = "sudo modprobe uhid\necho uhid | sudo tee /etc/modules-load.d/tpm-u2f.conf   # load it at every boot"

func checkUHIDModule(_ context.Context, e *Env) Result {
	if _, err := os.Stat(e.UHID); err != nil {
		return fix(moduleFix, "%s is missing: the uhid kernel module is not loaded", e.UHID)
	}
	return ok("%s exists", e.UHID)
}

func checkUHIDAccess(_ context.Context, e *Env) Result {
	if _, err := os.Stat(e.UHID); err != nil {
		return skip("no %s", e.UHID)
	}
	if err := e.Access(e.UHID); err != nil {
		return fix("sudo tpm-u2f install --system        # the udev rule: group tpm-u2f may open /dev/uhid\nsudo usermod -aG tpm-u2f \"$USER\"     # then log out and in again",
			"you cannot open %s: %v", e.UHID, err)
	}
	return ok("you can open %s", e.UHID)
}

func tpmIsDevice(e *Env) bool { return strings.HasPrefix(e.TPM, "/") }

func checkTPMDevice(_ context.Context, e *Env) Result {
	if !tpmIsDevice(e) {
		return skip("the daemon uses %s, not a device node", e.TPM)
	}
	if _, err := os.Stat(e.TPM); err != nil {
		return fix("enable the TPM (TPM 2.0, \"fTPM\" or \"PTT\") in the firmware setup, then reboot",
			"%s is missing: no TPM 2.0, or it is disabled", e.TPM)
	}
	return ok("%s exists", e.TPM)
}

func checkTPMAccess(_ context.Context, e *Env) Result {
	if !tpmIsDevice(e) {
		return skip("the daemon uses %s", e.TPM)
	}
	if _, err := os.Stat(e.TPM); err != nil {
		return skip("no %s", e.TPM)
	}
	if err := e.Access(e.TPM); err != nil {
		group := "tss"
		if fi, err := os.Stat(e.TPM); err == nil {
			if g := fileGroup(fi); g != "" {
				group = g
			}
		}
		return fix(fmt.Sprintf("sudo usermod -aG %s \"$USER\"     # then log out and in again", group),
			"you cannot open %s: %v", e.TPM, err)
	}
	return ok("you can open %s", e.TPM)
}

// pinFailRevision is the TPM 2.0 library revision that brought
// TPM_NT_PIN_FAIL indices, which hold the PIN (116: revision 1.16).
const pinFailRevision = 116

func checkTPMCapabilities(_ context.Context, e *Env) Result {
	if e.OpenTPM == nil {
		return skip("not checked")
	}
	if tpmIsDevice(e) {
		if _, err := os.Stat(e.TPM); err != nil {
			return skip("no %s", e.TPM)
		}
	}
	if !strings.Contains(e.TPM, "tpmrm") && e.Status != nil && e.Control != "" && e.Status(e.Control) == nil {
		// A TPM without a resource manager (swtpm, /dev/tpm0) serves one
		// client, and the running daemon is it: that it answers says the
		// TPM does (it checked P-256 and the PIN indices at start).
		return ok("in use by the running daemon, which answers")
	}
	t, err := e.OpenTPM(e.TPM)
	if err != nil {
		return fix("see the TPM checks above; `tpm-u2f run --tpm ...` names another TPM", "cannot talk to the TPM %s: %v", e.TPM, err)
	}
	defer t.Close()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapECCCurves, PropertyCount: 64}.Execute(t)
	if err != nil {
		return fix("the TPM does not answer: reboot; check `dmesg | grep -i tpm`", "TPM2_GetCapability failed: %v", err)
	}
	curves, err := rsp.CapabilityData.Data.ECCCurves()
	if err != nil || !slices.Contains(curves.ECCCurves, tpm2.TPMECCNistP256) {
		return fix("no fix: tpm-u2f needs a TPM with ECDSA on P-256 (every TPM 2.0 for PCs has it)", "the TPM has no NIST P-256 curve")
	}
	rsp, err = tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTRevision), PropertyCount: 1}.Execute(t)
	if err != nil {
		return fix("reboot; check `dmesg | grep -i tpm`", "TPM2_GetCapability(properties) failed: %v", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTRevision {
		return fix("reboot; check `dmesg | grep -i tpm`", "the TPM does not say its revision")
	}
	rev := props.TPMProperty[0].Value
	if rev < pinFailRevision {
		return fix("update the TPM firmware (from the PC's vendor)", "TPM 2.0 revision %d.%02d predates PIN-fail NV indices (1.16), which hold the PIN", rev/100, rev%100)
	}
	return ok("answers; P-256, revision %d.%02d (PIN-fail NV indices)", rev/100, rev%100)
}

func checkDaemon(_ context.Context, e *Env) Result {
	if e.Control == "" || e.Status == nil {
		return fix("run it inside your desktop session (XDG_RUNTIME_DIR), or pass --control", "no control socket path")
	}
	if err := e.Status(e.Control); err != nil {
		return fix("systemctl --user enable --now tpm-u2f\nsystemctl --user status tpm-u2f      # says what it waits for",
			"the daemon does not answer on %s: %v", e.Control, err)
	}
	return ok("running; control socket %s", e.Control)
}

// hidrawNode finds the key's /dev/hidrawN by its HID_ID.
func hidrawNode(e *Env) (string, error) {
	dirs, err := os.ReadDir(e.SysHidraw)
	if err != nil {
		return "", err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(e.SysHidraw, d.Name(), "device", "uevent"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.EqualFold(line, "HID_ID="+e.HIDID) {
				return filepath.Join(e.Dev, d.Name()), nil
			}
		}
	}
	return "", fs.ErrNotExist
}

func checkHidraw(_ context.Context, e *Env) Result {
	node, err := hidrawNode(e)
	if err != nil {
		return fix("start the daemon with --transport uhid (the default), then check again",
			"no hidraw node for the key (HID_ID %s): browsers cannot see it", e.HIDID)
	}
	if err := e.Access(node); err != nil {
		return fix("sudo tpm-u2f install --system        # the udev rule tags the key's node uaccess\nsudo udevadm trigger --subsystem-match=hidraw",
			"you cannot open %s: %v (browsers run as you)", node, err)
	}
	return ok("%s, and you can open it", node)
}

func checkSessionBus(_ context.Context, e *Env) Result {
	c, err := e.SessionBus()
	if err != nil {
		return fix("run tpm-u2f from your desktop session (the systemd user unit does)", "no session bus: %v", err)
	}
	c.Close()
	return ok("reachable")
}

func checkNotifications(_ context.Context, e *Env) Result {
	c, err := e.SessionBus()
	if err != nil {
		return skip("no session bus")
	}
	defer c.Close()
	var caps []string
	err = c.Object("org.freedesktop.Notifications", "/org/freedesktop/Notifications").Call("org.freedesktop.Notifications.GetCapabilities", 0).Store(&caps)
	if err != nil {
		return fix("install a notification server: GNOME and KDE have one; elsewhere e.g. sudo apt install xfce4-notifyd (or dunst, mako)",
			"no notification server: the tray asks instead, where there is one")
	}
	if !slices.Contains(caps, "actions") {
		return fix("use a notification server that shows buttons (xfce4-notifyd, dunst, mako, GNOME, KDE)",
			"the notification server cannot show Allow/Deny buttons: the tray asks instead")
	}
	return ok("shows Allow/Deny buttons")
}

func checkTrayHost(_ context.Context, e *Env) Result {
	c, err := e.SessionBus()
	if err != nil {
		return skip("no session bus")
	}
	defer c.Close()
	var has bool
	if err := c.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.kde.StatusNotifierWatcher").Store(&has); err != nil || !has {
		return fix("GNOME: sudo apt install gnome-shell-extension-appindicator, then enable it in Extensions and log in again; other desktops: add a system tray (status notifier) to the panel",
			"no StatusNotifierItem host: no tray icon (lock and unlock with the tpm-u2f command)")
	}
	return ok("a StatusNotifierWatcher shows the tray icon")
}

func checkPinentry(_ context.Context, e *Env) Result {
	if e.LookPath == nil {
		return skip("not checked")
	}
	p, err := e.LookPath(e.Pinentry)
	if err != nil {
		return fix("sudo apt install pinentry-gnome3      # or pinentry-qt; sudo dnf install pinentry-gnome3",
			"%s not found: unlocking the key and `tpm-u2f credentials` cannot ask for the PIN", e.Pinentry)
	}
	// pinentry-curses and -tty draw on a terminal, and the daemon, a
	// user service, has none: they answer GETPIN with an error. Debian's
	// `pinentry` is a link (update-alternatives) that may lead to them.
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		target = p
	}
	if b := filepath.Base(target); b == "pinentry-curses" || b == "pinentry-tty" {
		choose := "sudo update-alternatives --set pinentry /usr/bin/pinentry-gnome3   # what `pinentry` runs (Debian, Ubuntu)"
		if e.Pinentry != "pinentry" {
			choose = "tpm-u2f run --pinentry pinentry-gnome3     # in the user unit's ExecStart (systemctl --user edit --full tpm-u2f)"
		}
		return fix("sudo apt install pinentry-gnome3      # or pinentry-qt; sudo dnf install pinentry-gnome3\n"+choose,
			"%s is %s, which needs a terminal, and the daemon has none: unlocking the key and `tpm-u2f credentials` cannot ask for the PIN", p, target)
	}
	return ok("%s", p)
}

// flatpakBrowsers are the Flathub IDs of browsers that speak to security
// keys over hidraw.
var flatpakBrowsers = []string{"org.mozilla.firefox", "org.chromium.Chromium", "com.google.Chrome", "com.brave.Browser", "com.microsoft.Edge", "com.vivaldi.Vivaldi", "io.gitlab.librewolf-community"}

func checkFlatpak(ctx context.Context, e *Env) Result {
	if e.LookPath == nil || e.Output == nil {
		return skip("not checked")
	}
	if _, err := e.LookPath("flatpak"); err != nil {
		return skip("flatpak is not installed")
	}
	out, err := e.Output(ctx, "flatpak", "list", "--app", "--columns=application")
	if err != nil {
		return fix("", "flatpak list failed: %v", outputErr(err))
	}
	var lacking, fine []string
	for _, app := range strings.Fields(string(out)) {
		// An app installed both system-wide and for the user is listed
		// twice; `flatpak info` merges the user's overrides into either.
		if !slices.Contains(flatpakBrowsers, app) || slices.Contains(lacking, app) || slices.Contains(fine, app) {
			continue
		}
		perms, err := e.Output(ctx, "flatpak", "info", "--show-permissions", app)
		if err == nil && hasAllDevices(string(perms)) {
			fine = append(fine, app)
		} else {
			lacking = append(lacking, app)
		}
	}
	switch {
	case len(lacking) > 0:
		var cmds []string
		for _, app := range lacking {
			cmds = append(cmds, "flatpak override --user --device=all "+app)
		}
		return fix(strings.Join(cmds, "\n"), "%s cannot reach security keys (no device access)", strings.Join(lacking, ", "))
	case len(fine) > 0:
		return ok("%s may use security keys", strings.Join(fine, ", "))
	}
	return skip("no Flatpak browser installed")
}

// hasAllDevices reads `flatpak info --show-permissions`' devices= line.
func hasAllDevices(perms string) bool {
	for _, line := range strings.Split(perms, "\n") {
		if v, found := strings.CutPrefix(strings.TrimSpace(line), "devices="); found {
			return slices.Contains(strings.Split(strings.TrimSuffix(v, ";"), ";"), "all")
		}
	}
	return false
}

// snapBrowsers are the snaps of browsers; snapd's u2f-devices interface
// admits only the security keys it lists by USB vendor and product.
var snapBrowsers = []string{"firefox", "chromium", "brave", "opera"}

func checkSnap(ctx context.Context, e *Env) Result {
	if e.LookPath == nil || e.Output == nil {
		return skip("not checked")
	}
	if _, err := e.LookPath("snap"); err != nil {
		return skip("snap is not installed")
	}
	out, err := e.Output(ctx, "snap", "list")
	if err != nil {
		// snapd not running ("cannot communicate with server"): no
		// snap runs then either, and the doctor cannot tell which there are.
		return skip("snap list failed: %v (is snapd running?)", outputErr(err))
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && slices.Contains(snapBrowsers, f[0]) {
			found = append(found, f[0])
		}
	}
	if len(found) == 0 {
		return skip("no snap browser installed")
	}
	return fix("use the browser from a .deb or rpm (e.g. Mozilla's APT repository for Firefox) or from Flathub with the override above",
		"%s: snap confinement gives browsers only the security keys snapd's u2f-devices interface lists, and tpm-u2f's virtual key is not among them", strings.Join(found, ", "))
}

// outputErr is err from Env.Output with the first line the program wrote
// to its standard error, which says why (exec's error says only "exit
// status 1").
func outputErr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if line, _, _ := strings.Cut(strings.TrimSpace(string(ee.Stderr)), "\n"); line != "" {
			return fmt.Sprintf("%v: %s", err, line)
		}
	}
	return err.Error()
}
