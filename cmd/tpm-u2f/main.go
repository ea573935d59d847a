// Command tpm-u2f is a FIDO security key backed by the TPM: a daemon that
// shows the desktop a USB authenticator through /dev/uhid and signs with
// keys that never leave the TPM. This package only parses flags and wires
// the parts together; the parts live in tpm, token, uhid, presence.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "devel"

const usage = `usage: tpm-u2f <command> [flags]

commands:
  run       run the security key daemon
  status    show the running daemon's state (TPM, lock, counter, replay store)
  lock      make the running key refuse everything that needs presence
  unlock    end lock
  replug    power-cycle the key (re-create the device, drop volatile state)
  credentials list | delete ID
            the discoverable credentials (passkeys) on the key
  reset     delete every credential on the key (asks to confirm)
  pin status | set | change
            the key's PIN: retries left, set the first one, change it (through
            the daemon, or the TPM directly when none runs; --stdin for scripts)
  config show | set
            alwaysUv, the minimum PIN length, forcePINChange (through the
            daemon, or the TPM directly when none runs; a change needs the PIN)
  install   install the systemd user unit (--system: udev rules, uhid at boot, the tpm-u2f group)
  doctor    check, in the order to fix them, what the key needs from this machine
            and desktop; print the command that fixes each problem (--json)
  demo      register and sign in against a WebAuthn relying party, on the embedded TPM simulator
  version   print the version

Exit codes: 0 success, 1 failure, 2 usage error, 3 the daemon is not running.

Run "tpm-u2f <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one subcommand and returns the process exit code: 0 success,
// 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runCommand(ctx, args[1:], stdout, stderr)
	case "status", "lock", "unlock", "replug":
		err = ctlCommand(ctx, args[0], args[1:], stdout, stderr)
	case "credentials":
		err = credentialsCommand(ctx, args[1:], stdout, stderr)
	case "reset":
		err = resetCommand(ctx, args[1:], stdout, stderr)
	case "pin":
		err = pinCommand(ctx, args[1:], stdout, stderr)
	case "config":
		err = configCommand(ctx, args[1:], stdout, stderr)
	case "install":
		err = installCommand(ctx, args[1:], stdout, stderr)
	case "demo":
		err = demoCommand(ctx, args[1:], stdout, stderr)
	case "doctor":
		err = doctorCommand(ctx, args[1:], stdout, stderr)
	case "manpage", "completion": // hidden, for packaging: manpage.go
		err = packagingCommand(ctx, args[0], args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "tpm-u2f %s\n", version)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "tpm-u2f: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errNoDaemon):
		return exitNoDaemon
	}
	fmt.Fprintf(stderr, "tpm-u2f %s: %v\n", args[0], err)
	return 1
}

// errUsage marks a flag error that the flag package has already reported.
var errUsage = errors.New("usage")

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		return errUsage
	}
	return nil
}
