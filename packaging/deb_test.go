// Package packaging holds the nfpm config of `make deb` and `make rpm`;
// its tests build the packages and check what they install.
package packaging

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the module root, one up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("TPM_U2F_REQUIRE_ALL") != "" && os.Getenv("TPM_U2F_PACKAGE_TEST") != "" {
				t.Fatalf("%s is required (TPM_U2F_REQUIRE_ALL): %v", tool, err)
			}
			t.Skipf("no %s", tool)
		}
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s%s", name, args, err, out, stderr.Bytes())
	}
	return string(out)
}

// debVersion is Debian policy 5.6.12's upstream_version without an epoch
// or revision, which RPM's Version also takes (no "-").
var debVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// TestVersionScript: packaging/version.sh gives a valid version that
// sorts in git order for a tree with no tag, a tag, commits after it and
// a dirty tree.
func TestVersionScript(t *testing.T) {
	need(t, "git")
	script, err := filepath.Abs("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t",
		"GIT_AUTHOR_DATE=2026-12-03T10:00:00Z", "GIT_COMMITTER_DATE=2026-12-03T10:00:00Z", "GIT_CONFIG_GLOBAL=/dev/null"}
	git := func(args ...string) string { return strings.TrimSpace(run(t, dir, env, "git", args...)) }
	version := func() string { return strings.TrimSpace(run(t, dir, env, script)) }
	commit := func(content string) {
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "f")
		git("commit", "-qm", content)
	}
	git("init", "-q")
	commit("one")
	hash := git("rev-parse", "--short=7", "HEAD")
	var got []string
	check := func(want string) {
		t.Helper()
		v := version()
		if v != want {
			t.Errorf("version.sh = %q, want %q", v, want)
		}
		if !debVersion.MatchString(v) {
			t.Errorf("version.sh = %q: not a valid Debian/RPM version", v)
		}
		got = append(got, v)
	}
	check("0.0~git20261203." + hash)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("0.0~git20261203." + hash + ".dirty")
	git("checkout", "-q", "f")
	git("tag", "v1.2.0-rc1")
	check("1.2.0~rc1")
	git("tag", "v1.2.0")
	commit("two")
	check("1.2.0+git1.g" + git("rev-parse", "--short", "HEAD"))
	if _, err := exec.LookPath("dpkg"); err == nil {
		for i := 1; i < len(got); i++ {
			if err := exec.Command("dpkg", "--compare-versions", got[i-1], "lt", got[i]).Run(); err != nil {
				t.Errorf("%s does not sort before %s", got[i-1], got[i])
			}
		}
	}
}

// TestDeb builds the .deb with `make deb` and checks what it installs:
// paths, owners and modes, the control fields, the unit's ExecStart, the
// maintainer scripts; then lintian reports no errors. It takes a Go build
// (seconds when cached) and lintian (about 6 s): make deb-check.
func TestDeb(t *testing.T) {
	if os.Getenv("TPM_U2F_PACKAGE_TEST") == "" {
		t.Skip("builds the package: make deb-check (TPM_U2F_PACKAGE_TEST=1)")
	}
	need(t, "dpkg-deb", "make", "git", "lintian")
	root := repoRoot(t)
	out := t.TempDir()
	version := strings.TrimSpace(run(t, root, nil, "packaging/version.sh"))
	run(t, root, nil, "make", "deb", "PKG_OUT="+out)
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	deb := debs[0]
	if want := "tpm-u2f_" + version + "_"; !strings.HasPrefix(filepath.Base(deb), want) {
		t.Errorf("package %s, want %s*", filepath.Base(deb), want)
	}
	if fi, err := os.Stat(deb); err == nil {
		t.Logf("%s: %d bytes", filepath.Base(deb), fi.Size())
	}

	info := run(t, root, nil, "dpkg-deb", "-I", deb)
	for _, want := range []string{
		"Package: tpm-u2f\n",
		"Version: " + version + "\n",
		"Architecture: ",
		"Maintainer: ",
		"default-dbus-session-bus | dbus-session-bus",
		"tpm-udev",
		"libc6",
		"Recommends: pinentry-gnome3 | pinentry\n",
		" preinst ",
		" postinst ",
		" prerm ",
		" postrm ",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}

	// Every file root-owned; the binary 0755, everything else 0644.
	want := map[string]string{
		"./usr/bin/tpm-u2f":                               "-rwxr-xr-x",
		"./usr/lib/systemd/user/tpm-u2f.service":          "-rw-r--r--",
		"./usr/lib/systemd/user-preset/80-tpm-u2f.preset": "-rw-r--r--",
		"./usr/lib/udev/rules.d/70-tpm-u2f.rules":         "-rw-r--r--",
		"./usr/lib/modules-load.d/tpm-u2f.conf":           "-rw-r--r--",
		"./usr/share/man/man1/tpm-u2f.1.gz":               "-rw-r--r--",
		"./usr/share/bash-completion/completions/tpm-u2f": "-rw-r--r--",
		"./usr/share/zsh/vendor-completions/_tpm-u2f":     "-rw-r--r--",
		"./usr/share/doc/tpm-u2f/copyright":               "-rw-r--r--",
		"./usr/share/doc/tpm-u2f/changelog.gz":            "-rw-r--r--",
		"./usr/share/doc/tpm-u2f/install.md":              "-rw-r--r--",
		"./usr/share/doc/tpm-u2f/README.md":               "-rw-r--r--",
	}
	for _, line := range strings.Split(strings.TrimSpace(run(t, root, nil, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Errorf("dpkg-deb -c: %q", line)
			continue
		}
		mode, owner, path := f[0], f[1], f[len(f)-1]
		if owner != "root/root" {
			t.Errorf("%s is owned by %s", path, owner)
		}
		if strings.HasPrefix(mode, "d") {
			if mode != "drwxr-xr-x" {
				t.Errorf("directory %s has mode %s", path, mode)
			}
			continue
		}
		if w, ok := want[path]; ok {
			if mode != w {
				t.Errorf("%s has mode %s, want %s", path, mode, w)
			}
			delete(want, path)
		} else if mode != "-rw-r--r--" {
			t.Errorf("%s has mode %s", path, mode)
		}
	}
	for path := range want {
		t.Errorf("the package lacks %s", path)
	}

	x := t.TempDir()
	run(t, root, nil, "dpkg-deb", "-x", deb, x)
	run(t, root, nil, "dpkg-deb", "-e", deb, filepath.Join(x, "DEBIAN"))
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join(x, path))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(path, ".gz") {
			r, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if b, err = io.ReadAll(r); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		return string(b)
	}
	unit := read("usr/lib/systemd/user/tpm-u2f.service")
	if !strings.Contains(unit, "\nExecStart=/usr/bin/tpm-u2f run\n") || strings.Contains(unit, "@BIN@") {
		t.Errorf("the unit's ExecStart is not /usr/bin/tpm-u2f run:\n%s", unit)
	}
	if p := read("usr/lib/systemd/user-preset/80-tpm-u2f.preset"); !strings.Contains(p, "\nenable tpm-u2f.service\n") {
		t.Errorf("preset:\n%s", p)
	}
	if m := read("usr/share/man/man1/tpm-u2f.1.gz"); !strings.Contains(m, ".TH TPM\\-U2F 1") || !strings.Contains(m, `\-\-replay\-window`) {
		t.Errorf("the man page is not tpm-u2f(1) with run's flags")
	}
	if c := read("usr/share/doc/tpm-u2f/changelog.gz"); !strings.HasPrefix(c, "tpm-u2f ("+version+") ") {
		t.Errorf("changelog:\n%s", c)
	}
	if b := read("usr/share/bash-completion/completions/tpm-u2f"); !strings.Contains(b, "complete -o default -F _tpm_u2f tpm-u2f") {
		t.Errorf("bash completion:\n%s", b)
	}
	postinst := read("DEBIAN/postinst")
	for _, want := range []string{"groupadd -r tpm-u2f", "udevadm control --reload", "deb-systemd-helper --user enable tpm-u2f.service"} {
		if !strings.Contains(postinst, want) {
			t.Errorf("postinst lacks %q", want)
		}
	}
	// The prerm stops the daemon in running user managers on dpkg -r
	// (make e2e-deb found it running on from the deleted binary).
	if prerm := read("DEBIAN/prerm"); !strings.Contains(prerm, `--machine="$uid@" stop tpm-u2f.service`) {
		t.Errorf("prerm does not stop the unit:\n%s", prerm)
	}
	if postrm := read("DEBIAN/postrm"); regexp.MustCompile(`(?m)^\s*(rm|groupdel|userdel)\s`).MatchString(postrm) {
		t.Errorf("postrm removes something beyond the package:\n%s", postrm)
	}
	if v := run(t, root, nil, filepath.Join(x, "usr/bin/tpm-u2f"), "version"); !strings.HasPrefix(v, "tpm-u2f ") || strings.Contains(v, "devel") {
		t.Errorf("the packaged binary's version: %q", v)
	}

	// lintian: errors fail; warnings and infos are logged.
	cmd := exec.Command("lintian", "--pedantic", "--display-info", "--fail-on", "error", deb)
	lint, err := cmd.CombinedOutput()
	t.Logf("lintian:\n%s", lint)
	if err != nil {
		t.Errorf("lintian: %v", err)
	}
}

// TestRPM builds the .rpm; where rpm is installed, it checks the paths,
// modes and requirements.
func TestRPM(t *testing.T) {
	if os.Getenv("TPM_U2F_PACKAGE_TEST") == "" {
		t.Skip("builds the package: make deb-check (TPM_U2F_PACKAGE_TEST=1)")
	}
	need(t, "make", "git")
	root := repoRoot(t)
	out := t.TempDir()
	run(t, root, nil, "make", "rpm", "PKG_OUT="+out)
	rpms, _ := filepath.Glob(filepath.Join(out, "*.rpm"))
	if len(rpms) != 1 {
		t.Fatalf("make rpm made %v", rpms)
	}
	if fi, err := os.Stat(rpms[0]); err == nil {
		t.Logf("%s: %d bytes", filepath.Base(rpms[0]), fi.Size())
	}
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Log("no rpm: contents not checked")
		return
	}
	list := run(t, root, nil, "rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]", rpms[0])
	for _, want := range []string{"-rwxr-xr-x root /usr/bin/tpm-u2f\n", "-rw-r--r-- root /usr/lib/systemd/user/tpm-u2f.service\n", "-rw-r--r-- root /usr/lib/udev/rules.d/70-tpm-u2f.rules\n", "-rw-r--r-- root /usr/share/zsh/site-functions/_tpm-u2f\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("rpm lacks %q:\n%s", want, list)
		}
	}
	if scripts := run(t, root, nil, "rpm", "-qp", "--scripts", rpms[0]); !strings.Contains(scripts, "systemctl --global preset tpm-u2f.service") || !strings.Contains(scripts, "preinstall scriptlet") || !strings.Contains(scripts, `--machine="$uid@" stop tpm-u2f.service`) || strings.Contains(scripts, "deb-systemd-helper") {
		t.Errorf("rpm scriptlets are not packaging/rpm's:\n%s", scripts)
	}
	req := run(t, root, nil, "rpm", "-qp", "--requires", rpms[0])
	for _, want := range []string{"dbus", "tpm2-tss"} {
		if !strings.Contains(req, want) {
			t.Errorf("rpm requires lacks %s:\n%s", want, req)
		}
	}
}

// TestMaintainerScripts runs the postinst and postrm of each package
// with each argument dpkg or rpm passes, against stand-ins for groupadd,
// getent, systemctl, deb-systemd-helper, udevadm and modprobe that log
// their arguments: the group is made when missing, the unit enabled on
// the first install only (an upgrade keeps an admin's disable: rpm's
// preset runs once, deb-systemd-helper enables only what was enabled),
// removal disables the unit and deletes no group or file.
func TestMaintainerScripts(t *testing.T) {
	need(t, "sh")
	bin := t.TempDir()
	logf := filepath.Join(t.TempDir(), "log")
	for _, tool := range []string{"groupadd", "systemctl", "deb-systemd-helper", "udevadm", "modprobe", "groupdel", "rm"} {
		stub := "#!/bin/sh\necho \"" + tool + " $*\" >> \"$STUB_LOG\"\n"
		switch tool {
		case "deb-systemd-helper":
			// was-enabled: true unless STUB_DISABLED (deb-systemd-helper
			// answers true for a unit it has never seen).
			stub += "case \"$*\" in *was-enabled*) [ -z \"$STUB_DISABLED\" ];; esac\n"
		}
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// getent succeeds when STUB_GROUP_EXISTS is set.
	getent := "#!/bin/sh\n[ -n \"$STUB_GROUP_EXISTS\" ]\n"
	if err := os.WriteFile(filepath.Join(bin, "getent"), []byte(getent), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		script    string
		args      []string
		env       []string
		want, not []string
	}{
		// The group exists before 70-tpm-u2f.rules is unpacked (udevd may
		// load the rule at once, and resolves GROUP= then).
		{"deb/preinst", []string{"install"}, nil, []string{"groupadd -r tpm-u2f"}, []string{"deb-systemd-helper", "systemctl"}},
		{"deb/preinst", []string{"upgrade", "0.0~git20261201.abc"}, []string{"STUB_GROUP_EXISTS=1"}, nil, []string{"groupadd"}},
		{"deb/postinst", []string{"configure", ""}, nil, []string{"groupadd -r tpm-u2f", "deb-systemd-helper --user enable tpm-u2f.service"}, []string{"systemctl --global", "preset", "restart", "start"}},
		{"deb/postinst", []string{"configure", "0.0~git20261201.abc"}, []string{"STUB_GROUP_EXISTS=1"}, []string{"deb-systemd-helper --user enable tpm-u2f.service"}, []string{"groupadd"}},
		{"deb/postinst", []string{"configure", "0.0~git20261201.abc"}, []string{"STUB_GROUP_EXISTS=1", "STUB_DISABLED=1"}, []string{"deb-systemd-helper --user update-state tpm-u2f.service"}, []string{"groupadd", "--user enable"}},
		{"rpm/preinst.sh", []string{"1"}, nil, []string{"groupadd -r tpm-u2f"}, []string{"systemctl"}},
		{"rpm/preinst.sh", []string{"2"}, []string{"STUB_GROUP_EXISTS=1"}, nil, []string{"groupadd"}},
		{"rpm/postinst.sh", []string{"1"}, nil, []string{"groupadd -r tpm-u2f", "systemctl --global preset tpm-u2f.service"}, nil},
		{"rpm/postinst.sh", []string{"2"}, []string{"STUB_GROUP_EXISTS=1"}, nil, []string{"groupadd", "preset"}},
		{"deb/postrm", []string{"remove"}, nil, []string{"deb-systemd-helper --user mask tpm-u2f.service"}, []string{"groupdel", "rm "}},
		{"deb/postrm", []string{"purge"}, nil, []string{"deb-systemd-helper --user purge tpm-u2f.service"}, []string{"groupdel", "rm "}},
		{"deb/postrm", []string{"upgrade", "1.0"}, nil, nil, []string{"deb-systemd-helper", "groupdel", "rm "}},
		{"rpm/postrm.sh", []string{"0"}, nil, []string{"systemctl --global disable tpm-u2f.service"}, []string{"groupdel", "rm "}},
		{"rpm/postrm.sh", []string{"1"}, nil, nil, []string{"disable", "groupdel", "rm "}},
		{"rpm/preun.sh", []string{"1"}, nil, nil, []string{"stop", "disable"}},
	} {
		os.Remove(logf)
		cmd := exec.Command("sh", append([]string{tc.script}, tc.args...)...)
		cmd.Env = append([]string{"PATH=" + bin + ":/usr/bin:/bin", "STUB_LOG=" + logf}, tc.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %q: %v\n%s", tc.script, tc.args, err, out)
		}
		b, _ := os.ReadFile(logf)
		got := string(b)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s %q %v: ran\n%s\nwithout %q", tc.script, tc.args, tc.env, got, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(got, n) {
				t.Errorf("%s %q %v: ran\n%s\nwith %q", tc.script, tc.args, tc.env, got, n)
			}
		}
	}
}

// TestDebMaintainerScriptsRealHelper runs the .deb's maintainer scripts
// in the order dpkg does for install, remove, reinstall and purge with
// Debian's real deb-systemd-helper on a DPKG_ROOT (only the tools that
// would touch this machine are stubbed), and checks the unit's links.
// make e2e-deb found that a reinstall after `dpkg -r` left the unit
// masked: the postrm's mask was never undone.
func TestDebMaintainerScriptsRealHelper(t *testing.T) {
	need(t, "sh", "perl", "deb-systemd-helper")
	root := t.TempDir()
	bin := t.TempDir()
	for _, tool := range []string{"groupadd", "getent", "udevadm", "modprobe", "systemctl"} {
		if err := os.WriteFile(filepath.Join(bin, tool), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unit := filepath.Join(root, "usr/lib/systemd/user/tpm-u2f.service")
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "contrib/tpm-u2f.service"))
	if err != nil {
		t.Fatal(err)
	}
	unpack := func() { // what dpkg does before the postinst
		if err := os.MkdirAll(filepath.Dir(unit), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(unit, src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command("sh", append([]string{name}, args...)...)
		// dpkg sets DPKG_MAINTSCRIPT_*; deb-systemd-helper does nothing without.
		cmd.Env = []string{"PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "DPKG_ROOT=" + root,
			"DPKG_MAINTSCRIPT_PACKAGE=tpm-u2f", "DPKG_MAINTSCRIPT_NAME=" + filepath.Base(name)}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %q: %v\n%s", name, args, err, out)
		}
	}
	wants := filepath.Join(root, "etc/systemd/user/graphical-session.target.wants/tpm-u2f.service")
	mask := filepath.Join(root, "etc/systemd/user/tpm-u2f.service")
	// enabled: nil when either is right (dpkg -r masks the unit and
	// leaves its links to the postrm's purge, as debhelper does).
	state := func(step string, enabled *bool, masked bool) {
		t.Helper()
		_, err := os.Lstat(wants)
		if got := err == nil; enabled != nil && got != *enabled {
			t.Errorf("%s: graphical-session.target.wants link there: %v, want %v", step, got, *enabled)
		}
		dst, err := os.Readlink(mask)
		if got := err == nil && dst == "/dev/null"; got != masked {
			t.Errorf("%s: masked: %v, want %v", step, got, masked)
		}
	}
	unpack()
	script("deb/postinst", "configure", "")
	yes, no := true, false
	state("install", &yes, false)
	script("deb/prerm", "remove")
	os.Remove(unit)
	script("deb/postrm", "remove")
	state("remove", nil, true)
	unpack()
	script("deb/postinst", "configure", "0.1")
	state("reinstall", &yes, false)
	script("deb/prerm", "remove")
	os.Remove(unit)
	script("deb/postrm", "remove")
	script("deb/postrm", "purge")
	state("purge", &no, false)
	// An admin's own mask (not the postrm's) survives a reinstall.
	if err := os.Symlink("/dev/null", mask); err != nil {
		t.Fatal(err)
	}
	unpack()
	script("deb/postinst", "configure", "")
	state("admin mask", nil, true)
}
