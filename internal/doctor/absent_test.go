package doctor

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/pinentry"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// The paths where a check has nothing to look at: each says SKIP (never a
// FIX, never OK) with why, or for a missing thing that blocks, a FIX.
func TestChecksSkipWhatIsNotThere(t *testing.T) {
	m := newMachine(t)
	e := m.env(nil)
	ctx := context.Background()
	skipped := func(name string, r Result, detail string) {
		t.Helper()
		if !r.Skipped || r.OK || r.Fix != "" || !strings.Contains(r.Detail, detail) {
			t.Errorf("%s: %+v, want SKIP %q", name, r, detail)
		}
	}
	// No /dev/uhid: its access is not asked (the module check says FIX).
	skipped("/dev/uhid access", checkUHIDAccess(ctx, e), "no "+e.UHID)
	// No TPM device node: access and capabilities are not asked.
	skipped("TPM access", checkTPMAccess(ctx, e), "no "+e.TPM)
	e.OpenTPM = func(string) (transport.TPMCloser, error) {
		t.Error("opened a missing TPM")
		return nil, errors.New("no")
	}
	skipped("TPM capabilities", checkTPMCapabilities(ctx, e), "no "+e.TPM)
	e.OpenTPM = nil
	m.file(t, "dev/tpmrm0", "")
	skipped("TPM capabilities without a way to open it", checkTPMCapabilities(ctx, e), "not checked")
	// A daemon on swtpm or the simulator: no device node to look for.
	e.TPM = "unix:/run/swtpm.sock"
	skipped("TPM device", checkTPMDevice(ctx, e), "not a device node")
	skipped("TPM access", checkTPMAccess(ctx, e), "the daemon uses unix:/run/swtpm.sock")
	// No session bus: the desktop checks below it are not asked (the
	// session bus check says FIX).
	skipped("notification server", checkNotifications(ctx, e), "no session bus")
	skipped("tray host", checkTrayHost(ctx, e), "no session bus")
	// The command's programs not looked up at all.
	e.LookPath, e.Output = nil, nil
	skipped("pinentry", checkPinentry(ctx, e), "not checked")
	skipped("Flatpak browsers", checkFlatpak(ctx, e), "not checked")
	skipped("snap browsers", checkSnap(ctx, e), "not checked")
}

// A TPM that is not a resource manager serves one client: while the
// daemon answers on its control socket, the doctor does not open it (and
// so cannot take it from the daemon). /dev/tpmrm0 is asked directly.
func TestTPMInUseByTheDaemon(t *testing.T) {
	m := newMachine(t)
	e := m.env(nil)
	e.TPM, e.Control = "unix:"+filepath.Join(m.dir, "swtpm.sock"), filepath.Join(m.dir, "control.sock")
	opened := 0
	e.OpenTPM = func(string) (transport.TPMCloser, error) { opened++; return nil, errors.New("busy") }
	e.Status = func(string) error { return nil }
	if r := checkTPMCapabilities(context.Background(), e); !r.OK || opened != 0 || !strings.Contains(r.Detail, "in use by the running daemon") {
		t.Errorf("swtpm in use by the daemon: %+v (opened %d times)", r, opened)
	}
	e.Status = func(string) error { return errors.New("connection refused") }
	if r := checkTPMCapabilities(context.Background(), e); r.OK || opened != 1 || !strings.Contains(r.Detail, "cannot talk to the TPM") {
		t.Errorf("swtpm, no daemon, nobody listening: %+v (opened %d times)", r, opened)
	}
	m.file(t, "dev/tpmrm0", "")
	e.TPM, e.Status = filepath.Join(m.dir, "dev/tpmrm0"), func(string) error { return nil }
	if r := checkTPMCapabilities(context.Background(), e); r.OK || opened != 2 {
		t.Errorf("tpmrm0 is asked even while the daemon runs: %+v (opened %d times)", r, opened)
	}
}

// The daemon check: no control socket path, a daemon that does not answer,
// one that does (interop.TestDoctorAgainstTheDaemon runs the real one).
func TestDaemonCheck(t *testing.T) {
	m := newMachine(t)
	e := m.env(nil)
	if r := checkDaemon(context.Background(), e); r.OK || !strings.Contains(r.Detail, "no control socket path") {
		t.Errorf("no path: %+v", r)
	}
	e.Control = filepath.Join(m.dir, "control.sock")
	e.Status = func(string) error { return errors.New("connection refused") }
	if r := checkDaemon(context.Background(), e); r.OK || !strings.Contains(r.Fix, "systemctl --user enable --now tpm-u2f") || !strings.Contains(r.Detail, "connection refused") {
		t.Errorf("not answering: %+v", r)
	}
	e.Status = func(string) error { return nil }
	if r := checkDaemon(context.Background(), e); !r.OK || !strings.Contains(r.Detail, e.Control) {
		t.Errorf("answering: %+v", r)
	}
}

// The TPM access fix names the group that owns the node (tss on Debian,
// Ubuntu and Fedora; here whatever group the test's file has).
func TestTPMAccessFixNamesTheNodesGroup(t *testing.T) {
	m := newMachine(t)
	e := m.env(nil)
	m.denied[m.file(t, "dev/tpmrm0", "")] = true
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Skipf("no name for group %d: %v", os.Getegid(), err)
	}
	if r := checkTPMAccess(context.Background(), e); r.OK || !strings.HasPrefix(r.Fix, "sudo usermod -aG "+g.Name+" \"$USER\"") {
		t.Errorf("denied: %+v, want usermod -aG %s", r, g.Name)
	}
}

// pinentry found with the same exec.LookPath the command uses: on PATH,
// not on PATH, and --pinentry given as a path.
func TestPinentryOnPATH(t *testing.T) {
	bin := t.TempDir()
	prog := filepath.Join(bin, "pinentry-gnome3")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho OK\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	e := Default("/dev/tpmrm0", "", "pinentry-gnome3")
	if r := checkPinentry(context.Background(), e); !r.OK || r.Detail != prog {
		t.Errorf("on PATH: %+v", r)
	}
	e.Pinentry = "pinentry-qt"
	if r := checkPinentry(context.Background(), e); r.OK || r.Skipped || !strings.Contains(r.Fix, "apt install pinentry-gnome3") || !strings.Contains(r.Detail, "pinentry-qt not found") {
		t.Errorf("not on PATH: %+v", r)
	}
	e.Pinentry = prog
	if r := checkPinentry(context.Background(), e); !r.OK {
		t.Errorf("as a path: %+v", r)
	}
	e.Pinentry = filepath.Join(bin, "missing")
	if r := checkPinentry(context.Background(), e); r.OK {
		t.Errorf("a path that is not there: %+v", r)
	}
}

// Flatpak and snap installed but not answering, or without browsers.
func TestFlatpakAndSnapWithoutBrowsersOrAnswers(t *testing.T) {
	m := newMachine(t)
	m.have["flatpak"], m.have["snap"] = true, true
	e := m.env(nil)
	ctx := context.Background()
	// `flatpak list` fails: a WARN that says so, not a silent OK.
	if r := checkFlatpak(ctx, e); r.OK || r.Skipped || !strings.Contains(r.Detail, "flatpak list failed") {
		t.Errorf("flatpak list failing: %+v", r)
	}
	// `snap list` fails (snapd not running): it cannot tell, and says so.
	if r := checkSnap(ctx, e); !r.Skipped || !strings.Contains(r.Detail, "snap list failed") {
		t.Errorf("snap list failing: %+v", r)
	}
	m.outputs["flatpak list --app --columns=application"] = "org.gnome.Maps\n"
	m.outputs["snap list"] = "Name    Version  Rev\ncore22  2024     1\n"
	if r := checkFlatpak(ctx, e); !r.Skipped || r.Detail != "no Flatpak browser installed" {
		t.Errorf("no Flatpak browser: %+v", r)
	}
	if r := checkSnap(ctx, e); !r.Skipped || r.Detail != "no snap browser installed" {
		t.Errorf("no snap browser: %+v", r)
	}
	// A browser whose permissions flatpak will not show counts as lacking.
	m.outputs["flatpak list --app --columns=application"] = "org.chromium.Chromium\n"
	if r := checkFlatpak(ctx, e); r.OK || r.Fix != "flatpak override --user --device=all org.chromium.Chromium" {
		t.Errorf("flatpak info failing: %+v", r)
	}
}

// snap installed without snapd running (as in a container, or here, where
// snapd cannot run: it needs systemd as PID 1 and squashfs mounts). The
// stand-in prints what snap prints then, and exits 1 as it does; the
// check runs it through Default's exec and says why it cannot tell.
func TestSnapWithoutSnapd(t *testing.T) {
	bin := t.TempDir()
	script := "#!/bin/sh\necho 'error: cannot communicate with server: Get \"http://localhost/v2/snaps\": dial unix /run/snapd.socket: connect: no such file or directory' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "snap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	r := checkSnap(context.Background(), Default("/dev/tpmrm0", "", "pinentry"))
	if !r.Skipped || !strings.Contains(r.Detail, "exit status 1: error: cannot communicate with server") || !strings.Contains(r.Detail, "is snapd running?") {
		t.Errorf("snap without snapd: %+v", r)
	}
}

// rewriteTPM changes the answers of a real TPM to GetCapability: a TPM
// without what tpm-u2f needs cannot be had from swtpm, so its answers
// are edited in place (same sizes).
type rewriteTPM struct {
	transport.TPMCloser
	curves   bool   // report P-384 where the TPM has P-256
	revision uint32 // report this TPM_PT_REVISION (0: leave it)
}

func (r rewriteTPM) Send(cmd []byte) ([]byte, error) {
	rsp, err := r.TPMCloser.Send(cmd)
	// GetCapability: command code 0x17A at [6:10], capability at [10:14];
	// the response's capability at [11:15], its count at [15:19].
	if err != nil || len(cmd) < 22 || binary.BigEndian.Uint32(cmd[6:10]) != 0x17A || len(rsp) < 19 {
		return rsp, err
	}
	switch binary.BigEndian.Uint32(rsp[11:15]) {
	case 0x08: // TPM_CAP_ECC_CURVES: a list of uint16
		for i := 19; r.curves && i+2 <= len(rsp); i += 2 {
			if binary.BigEndian.Uint16(rsp[i:]) == 0x0003 { // TPM_ECC_NIST_P256
				binary.BigEndian.PutUint16(rsp[i:], 0x0004) // P-384
			}
		}
	case 0x06: // TPM_CAP_TPM_PROPERTIES: (property, value) pairs
		if r.revision != 0 && len(rsp) >= 27 && binary.BigEndian.Uint32(rsp[19:23]) == 0x102 { // TPM_PT_REVISION
			binary.BigEndian.PutUint32(rsp[23:27], r.revision)
		}
	}
	return rsp, nil
}

// A TPM without P-256, or older than revision 1.16 (no PIN-fail NV
// indices), is a FIX with no command that could fix it but the vendor's.
func TestTPMWithoutWhatWeNeed(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	m := newMachine(t)
	e := m.env(nil)
	e.TPM = spec
	var rw rewriteTPM
	e.OpenTPM = func(spec string) (transport.TPMCloser, error) {
		t, _, err := tpm.Open(spec)
		if err != nil {
			return nil, err
		}
		rw.TPMCloser = t
		return rw, nil
	}
	if r := checkTPMCapabilities(context.Background(), e); !r.OK || !strings.Contains(r.Detail, "P-256, revision 1.") {
		t.Fatalf("swtpm as it is: %+v", r)
	}
	rw = rewriteTPM{curves: true}
	if r := checkTPMCapabilities(context.Background(), e); r.OK || r.Detail != "the TPM has no NIST P-256 curve" {
		t.Errorf("no P-256: %+v", r)
	}
	rw = rewriteTPM{revision: 105}
	if r := checkTPMCapabilities(context.Background(), e); r.OK || !strings.Contains(r.Detail, "TPM 2.0 revision 1.05 predates PIN-fail NV indices") || !strings.Contains(r.Fix, "firmware") {
		t.Errorf("revision 1.05: %+v", r)
	}
	rw = rewriteTPM{revision: 116}
	if r := checkTPMCapabilities(context.Background(), e); !r.OK || !strings.Contains(r.Detail, "revision 1.16") {
		t.Errorf("revision 1.16: %+v", r)
	}
}

// pinentry-curses (Debian's default `pinentry` when no desktop pinentry is
// installed) needs a terminal; the daemon has none. The doctor says so
// for it and for a `pinentry` link that leads to it, and the real
// pinentry-curses, asked as the daemon asks (pinentry.Ask, pipes and no
// terminal), indeed answers with an error instead of a prompt.
func TestPinentryCursesNeedsATerminal(t *testing.T) {
	bin := t.TempDir()
	curses := filepath.Join(bin, "pinentry-curses")
	if err := os.WriteFile(curses, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(curses, filepath.Join(bin, "pinentry")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	e := Default("/dev/tpmrm0", "", "pinentry")
	r := checkPinentry(context.Background(), e)
	if r.OK || r.Skipped || !strings.Contains(r.Detail, "is "+curses+", which needs a terminal") || !strings.Contains(r.Fix, "update-alternatives --set pinentry /usr/bin/pinentry-gnome3") {
		t.Errorf("pinentry -> pinentry-curses: %+v", r)
	}
	e.Pinentry = "pinentry-curses"
	if r := checkPinentry(context.Background(), e); r.OK || !strings.Contains(r.Fix, "--pinentry pinentry-gnome3") {
		t.Errorf("--pinentry pinentry-curses: %+v", r)
	}

	const real = "/usr/bin/pinentry-curses"
	if _, err := os.Stat(real); err != nil {
		tpmtest.SkipMissing(t, "pinentry-curses not installed (apt-get install pinentry-curses)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pin, err := pinentry.Ask(ctx, real, pinentry.Prompt{Title: "tpm-u2f", Prompt: "PIN:"})
	if err == nil || ctx.Err() != nil || pin != nil {
		t.Fatalf("pinentry-curses without a terminal: PIN %q, err %v (ctx %v), want an error at once", pin, err, ctx.Err())
	}
	t.Logf("pinentry-curses without a terminal: %v", err)
}
