package doctor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// lsdevSource is the Flatpak test app's program: it lists /dev as the
// sandbox shows it. Built static (CGO_ENABLED=0), it needs nothing from
// the runtime, which is empty.
const lsdevSource = `package main

import (
	"fmt"
	"os"
)

func main() {
	ents, err := os.ReadDir("/dev")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for _, e := range ents {
		fmt.Println(e.Name())
	}
}
`

// goTool is the go command of the toolchain running the tests.
func goTool(t *testing.T) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// buildLsdev builds lsdevSource. Call it before the test moves HOME and
// the XDG directories: Go's build cache lives there.
func buildLsdev(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(lsdevSource), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "lsdev")
	cmd := exec.Command(goTool(t), "build", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build lsdev: %v\n%s", err, b)
	}
	return out
}

// privateFlatpak points flatpak at installations of its own in a
// temporary directory (nothing of this machine's user or system
// installation is seen or touched) and returns a function that runs
// flatpak there and fails the test when it fails.
func privateFlatpak(t *testing.T) (root string, run func(args ...string) string) {
	t.Helper()
	root = t.TempDir()
	home := filepath.Join(root, "home")
	for k, v := range map[string]string{
		"HOME": home, "XDG_DATA_HOME": home + "/.local/share", "XDG_CACHE_HOME": home + "/.cache",
		"XDG_CONFIG_HOME": home + "/.config", "XDG_RUNTIME_DIR": filepath.Join(root, "run"),
		"FLATPAK_USER_DIR":   filepath.Join(root, "user"),   // flatpak --user
		"FLATPAK_SYSTEM_DIR": filepath.Join(root, "system"), // flatpak --system
		"FLATPAK_CONFIG_DIR": filepath.Join(root, "etc"),    // no /etc/flatpak/installations.d
	} {
		if err := os.MkdirAll(v, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Setenv(k, v)
	}
	// No session bus: flatpak run would start xdg-dbus-proxy for it.
	if v, ok := os.LookupEnv("DBUS_SESSION_BUS_ADDRESS"); ok {
		os.Unsetenv("DBUS_SESSION_BUS_ADDRESS")
		t.Cleanup(func() { os.Setenv("DBUS_SESSION_BUS_ADDRESS", v) })
	}
	return root, func(args ...string) string {
		t.Helper()
		out, err := exec.Command("flatpak", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("flatpak %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

// fakeFirefox builds, without network, an ostree repository in root with
// a runtime that holds nothing and an app with Flathub's ID for Firefox
// whose command is prog and whose only device is the GPU (devices=dri),
// and returns the repository's path.
func fakeFirefox(t *testing.T, root, prog string, run func(args ...string) string) string {
	t.Helper()
	repo := filepath.Join(root, "repo")
	rt := filepath.Join(root, "runtime")
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	arch := strings.TrimSpace(run("--default-arch"))
	write(filepath.Join(rt, "metadata"), "[Runtime]\nname=org.tpmu2f.Platform\nruntime=org.tpmu2f.Platform/"+arch+"/1\nsdk=org.tpmu2f.Platform/"+arch+"/1\n", 0o644)
	// build-export wants files/ (a build directory) and exports a
	// runtime's usr/.
	write(filepath.Join(rt, "usr", "README"), "an empty runtime for tpm-u2f's doctor test\n", 0o644)
	if err := os.MkdirAll(filepath.Join(rt, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	run("build-export", "--runtime", repo, rt, "1")

	app := filepath.Join(root, "app")
	write(filepath.Join(app, "metadata"), "[Application]\nname=org.mozilla.firefox\nruntime=org.tpmu2f.Platform/"+arch+"/1\ncommand=firefox\n\n[Context]\nshared=network;ipc;\nsockets=wayland;pulseaudio;\ndevices=dri;\n", 0o644)
	b, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(app, "files", "bin", "firefox"), string(b), 0o755)
	if err := os.MkdirAll(filepath.Join(app, "export"), 0o755); err != nil {
		t.Fatal(err)
	}
	run("build-export", repo, app, "stable")
	return repo
}

// sandboxDev lists /dev as the app sees it in its sandbox.
func sandboxDev(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("flatpak", "run", "org.mozilla.firefox").CombinedOutput()
	if err != nil {
		tpmtest.SkipMissing(t, "flatpak run cannot make a sandbox here (bwrap): "+err.Error()+": "+string(out))
	}
	return strings.Fields(string(out))
}

func hostDev(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/dev")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestFlatpakCheckAgainstRealFlatpak: Debian's flatpak with a Firefox
// (Flathub's ID) installed in a private --user installation, with the GPU
// as its only device (dri). The doctor says FIX with the override;
// running exactly that command makes the check OK, and it is what gives
// the sandbox the machine's /dev (where the key's hidraw node is): the
// app, run by flatpak in its bwrap sandbox, sees no host device before
// and every one after.
func TestFlatpakCheckAgainstRealFlatpak(t *testing.T) {
	if _, err := exec.LookPath("flatpak"); err != nil {
		tpmtest.SkipMissing(t, "flatpak not installed (apt-get install flatpak)")
	}
	prog := buildLsdev(t)
	root, run := privateFlatpak(t)
	e := Default("/dev/tpmrm0", "", "pinentry")
	if r := checkFlatpak(context.Background(), e); !r.Skipped || r.Detail != "no Flatpak browser installed" {
		t.Errorf("flatpak without apps: %+v", r)
	}
	repo := fakeFirefox(t, root, prog, run)
	run("--user", "remote-add", "--no-gpg-verify", "local", "file://"+repo)
	run("--user", "install", "-y", "--noninteractive", "local", "org.mozilla.firefox")

	r := checkFlatpak(context.Background(), e)
	const want = "flatpak override --user --device=all org.mozilla.firefox"
	if r.OK || r.Skipped || r.Fix != want || !strings.Contains(r.Detail, "org.mozilla.firefox cannot reach security keys") {
		t.Fatalf("Firefox with devices=dri: %+v, want a FIX %q", r, want)
	}
	host := hostDev(t)
	before := sandboxDev(t)
	var hidden []string
	for _, n := range host {
		if !slices.Contains(before, n) {
			hidden = append(hidden, n)
		}
	}
	if len(hidden) == 0 {
		t.Fatalf("the sandbox without device access shows all of /dev: %v", before)
	}

	// The user runs the fix as printed.
	f := strings.Fields(r.Fix)
	if out, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", r.Fix, err, out)
	}
	r = checkFlatpak(context.Background(), e)
	if !r.OK || r.Detail != "org.mozilla.firefox may use security keys" {
		t.Fatalf("after %q: %+v, want OK", want, r)
	}
	after := sandboxDev(t)
	for _, n := range hidden {
		if !slices.Contains(after, n) {
			t.Errorf("after the override the sandbox still lacks /dev/%s", n)
		}
	}

	// Taken away again (`--nodevice=all` writes devices=!all;), or the
	// override reset: FIX again.
	run("override", "--user", "--nodevice=all", "org.mozilla.firefox")
	if r := checkFlatpak(context.Background(), e); r.OK || r.Fix != want {
		t.Errorf("after --nodevice=all: %+v\n%s", r, run("info", "--show-permissions", "org.mozilla.firefox"))
	}
	run("override", "--user", "--reset", "org.mozilla.firefox")
	if r := checkFlatpak(context.Background(), e); r.OK || r.Fix != want {
		t.Errorf("after the override was reset: %+v", r)
	}
}

// TestFlatpakUserOverrideOnASystemInstall: Firefox installed system-wide
// and for the user (flatpak list shows it twice): one fix line, and the
// user override counts for both installations. Installing into a
// --system installation (here a private one, FLATPAK_SYSTEM_DIR) without
// flatpak's system helper needs root.
func TestFlatpakUserOverrideOnASystemInstall(t *testing.T) {
	if _, err := exec.LookPath("flatpak"); err != nil {
		tpmtest.SkipMissing(t, "flatpak not installed (apt-get install flatpak)")
	}
	if os.Geteuid() != 0 {
		t.Skip("a --system flatpak installation without the system helper needs root")
	}
	prog := buildLsdev(t)
	root, run := privateFlatpak(t)
	repo := fakeFirefox(t, root, prog, run)
	for _, inst := range []string{"--system", "--user"} {
		run(inst, "remote-add", "--no-gpg-verify", "local", "file://"+repo)
		run(inst, "install", "-y", "--noninteractive", "local", "org.mozilla.firefox")
	}
	if got := run("list", "--app", "--columns=application,installation"); strings.Count(got, "org.mozilla.firefox") != 2 {
		t.Fatalf("flatpak list:\n%s", got)
	}
	e := Default("/dev/tpmrm0", "", "pinentry")
	const want = "flatpak override --user --device=all org.mozilla.firefox"
	if r := checkFlatpak(context.Background(), e); r.OK || r.Fix != want || r.Detail != "org.mozilla.firefox cannot reach security keys (no device access)" {
		t.Fatalf("Firefox installed twice with devices=dri: %+v, want one FIX %q", r, want)
	}
	run(strings.Fields(want)[1:]...)
	if r := checkFlatpak(context.Background(), e); !r.OK {
		t.Fatalf("after %q: %+v", want, r)
	}
	for _, inst := range []string{"--system", "--user"} {
		if perms := run(inst, "info", "--show-permissions", "org.mozilla.firefox"); !hasAllDevices(perms) {
			t.Errorf("flatpak %s info --show-permissions after the user override:\n%s", inst, perms)
		}
	}
}

// Without flatpak (or snap) on PATH, the checks are skipped, found with
// the same exec.LookPath the command uses.
func TestFlatpakAndSnapAbsentFromPATH(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	e := Default("/dev/tpmrm0", "", "pinentry")
	if r := checkFlatpak(context.Background(), e); !r.Skipped || r.Detail != "flatpak is not installed" {
		t.Errorf("flatpak absent: %+v", r)
	}
	if r := checkSnap(context.Background(), e); !r.Skipped || r.Detail != "snap is not installed" {
		t.Errorf("snap absent: %+v", r)
	}
}
