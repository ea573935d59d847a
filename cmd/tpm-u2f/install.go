package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tpm-u2f/tpm-u2f/contrib"
	"github.com/tpm-u2f/tpm-u2f/internal/atomicfile"
)

// installCommand places the systemd user unit (default) or, with
// --system, the udev rules, the modules-load entry and the tpm-u2f group,
// and prints each step and what is left to run.
func installCommand(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpm-u2f install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	system := fs.Bool("system", false, "install the system parts instead (as root): udev rules, uhid at boot, the tpm-u2f group")
	root := fs.String("root", "/", "install under this directory (for packaging and tests)")
	dryRun := fs.Bool("dry-run", false, "print what would be done, change nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	place := func(path, content string, mode os.FileMode) error {
		full := filepath.Join(*root, path)
		if *dryRun {
			fmt.Fprintf(stdout, "would write %s\n", full)
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := atomicfile.Write(full, []byte(content)); err != nil {
			return err
		}
		if err := os.Chmod(full, mode); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", full)
		return nil
	}
	if *system {
		if os.Geteuid() != 0 && *root == "/" && !*dryRun {
			return errors.New("--system needs root: sudo tpm-u2f install --system")
		}
		if err := place("etc/udev/rules.d/70-tpm-u2f.rules", contrib.UdevRules, 0o644); err != nil {
			return err
		}
		if err := place("etc/modules-load.d/tpm-u2f.conf", contrib.ModulesLoad, 0o644); err != nil {
			return err
		}
		if *root == "/" && !*dryRun {
			if err := exec.Command("getent", "group", "tpm-u2f").Run(); err != nil {
				if out, err := exec.Command("groupadd", "--system", "tpm-u2f").CombinedOutput(); err != nil {
					return fmt.Errorf("groupadd tpm-u2f: %v: %s", err, out)
				}
				fmt.Fprintln(stdout, "created group tpm-u2f")
			}
		}
		fmt.Fprint(stdout, `
now run:
  sudo modprobe uhid
  sudo udevadm control --reload && sudo udevadm trigger
  sudo usermod -aG tpm-u2f,tss $USER     # /dev/uhid and /dev/tpmrm0; log out and in again
then, as yourself: tpm-u2f install
`)
		return nil
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		return err
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return err
	}
	configHome := os.Getenv("XDG_CONFIG_HOME")
	if configHome == "" {
		configHome = filepath.Join(home, ".config")
	}
	unitDir := filepath.Join(configHome, "systemd", "user")
	if *root != "/" {
		unitDir = strings.TrimPrefix(unitDir, "/")
	}
	if err := place(filepath.Join(unitDir, "tpm-u2f.service"), strings.ReplaceAll(contrib.SystemdUnit, "@BIN@", bin), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, `
now run:
  systemctl --user daemon-reload
  systemctl --user enable --now tpm-u2f
and check it with: tpm-u2f status
(the system parts, once, as root: sudo tpm-u2f install --system)
`)
	return nil
}
