package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tpm-u2f/tpm-u2f/control"
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// configCommand: tpm-u2f config show | set. The settings CTAP's
// authenticatorConfig changes (alwaysUv, the minimum PIN length and the
// RP IDs that may read it, forcePINChange), through the running daemon,
// or, when none runs, in the TPM directly (as `tpm-u2f pin` does). A
// change needs the PIN when one is set, read as `tpm-u2f pin` reads it,
// and, through the daemon, an Allow on the desktop.
func configCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, fs, socket, err := subcommand("config", args, stderr,
		"show | set [--always-uv on|off] [--min-pin-length N] [--force-pin-change] [--rp-id ID]... [--stdin] [--control PATH]", "show", "set")
	if err != nil {
		return err
	}
	var change control.ConfigChange
	var rpIDs rpIDList
	if sub == "set" {
		fs.Func("always-uv", "on: every registration and sign-in needs the PIN, and U2F is off; off: not", func(v string) error {
			switch v {
			case "on", "true":
				t := true
				change.AlwaysUV = &t
			case "off", "false":
				f := false
				change.AlwaysUV = &f
			default:
				return errors.New("on or off")
			}
			return nil
		})
		fs.Func("min-pin-length", fmt.Sprintf("raise the minimum PIN length (%d to %d characters; it never goes down)", pin.MinLength, token.MaxMinPINLength), func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < pin.MinLength || n > token.MaxMinPINLength {
				return fmt.Errorf("a number from %d to %d", pin.MinLength, token.MaxMinPINLength)
			}
			change.MinPINLength = n
			return nil
		})
		fs.BoolVar(&change.ForcePINChange, "force-pin-change", false, "make the PIN be changed before it is used again")
		fs.Var(&rpIDs, "rp-id", fmt.Sprintf("an RP ID that may read the minimum PIN length (minPinLength extension; up to %d, replaces the list)", token.MaxMinPINLengthRPIDs))
	}
	fromStdin := fs.Bool("stdin", false, "read the PIN from standard input (for scripts)")
	tpmSpec := fs.String("tpm", defaultTPM(), "when no daemon runs: the TPM, as for run --tpm; env TPM_U2F_TPM")
	state := fs.String("state", defaultStateDir(), "when no daemon runs: the state directory, as for run --state")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	b, err := connectConfig(socket, *tpmSpec, *state, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	current, err := b.config(nil, nil)
	if err != nil {
		return err
	}
	if sub == "set" {
		change.RPIDs = rpIDs
		if change.AlwaysUV == nil && change.MinPINLength == 0 && !change.ForcePINChange && change.RPIDs == nil {
			fmt.Fprintln(stderr, "tpm-u2f config set: nothing to change (see tpm-u2f config set -h)")
			return errUsage
		}
		var h []byte
		if current.PINSet {
			in := &pinReader{ctx: ctx, r: pinInput, stdin: *fromStdin, prompt: stderr}
			p, err := in.read("PIN: ")
			if err != nil {
				return err
			}
			if len(p) == 0 {
				return errors.New("no PIN given; nothing was changed")
			}
			h = pinHash(p)
			defer clear(h)
		}
		if !b.direct() {
			fmt.Fprintln(stderr, "tpm-u2f: allow changing the key's settings in the desktop prompt")
		}
		if current, err = b.config(&change, h); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "settings changed")
	}
	showSettings(stdout, &current)
	if b.direct() {
		fmt.Fprintln(stdout, "(no daemon running: the settings in the TPM directly)")
	}
	return nil
}

// configBackend is where config commands go: the daemon, or the TPM.
type configBackend interface {
	config(change *control.ConfigChange, pinHash []byte) (control.Settings, error)
	direct() bool
	close()
}

// connectConfig reaches the daemon, or, when none answers, the TPM
// directly (openDirectPIN: the same --tpm, --state and state lock).
func connectConfig(socket func() (string, error), tpmSpec, state string, stderr io.Writer) (configBackend, error) {
	path, perr := socket()
	if perr == nil {
		if _, err := control.Call(path, control.Request{Command: "config"}); !errors.Is(err, control.ErrNoDaemon) {
			return daemonConfig(path), nil
		}
	}
	d, err := openDirectPIN(tpmSpec, state, stderr)
	if err != nil {
		where := "no control socket"
		if perr == nil {
			where = "no control socket at " + path
		}
		return nil, fmt.Errorf("the daemon is not running (%s), and the TPM could not be used directly: %w", where, err)
	}
	auth := token.New(token.Config{Keys: token.TPMKeys{Engine: d.engine}, PIN: token.TPMPIN{Engine: d.engine}, Settings: d.engine})
	return &directConfig{d: d, auth: auth}, nil
}

type daemonConfig string

func (d daemonConfig) config(change *control.ConfigChange, h []byte) (control.Settings, error) {
	req := control.Request{Command: "config", Config: change, PINHash: h}
	rsp, err := control.Call(string(d), req)
	if err != nil {
		return control.Settings{}, err
	}
	if rsp.Settings == nil {
		return control.Settings{}, errors.New("the daemon sent no settings")
	}
	return *rsp.Settings, nil
}

func (daemonConfig) direct() bool { return false }
func (daemonConfig) close()       {}

type directConfig struct {
	d    *directPIN
	auth *token.Authenticator
}

func (c *directConfig) config(change *control.ConfigChange, h []byte) (control.Settings, error) {
	return applyConfig(c.d.engine, c.auth, change, h, nil)
}

func (*directConfig) direct() bool { return true }
func (c *directConfig) close()     { c.auth.Close(); c.d.close() }

type rpIDList []string

func (l *rpIDList) String() string { return strings.Join(*l, ",") }
func (l *rpIDList) Set(v string) error {
	if v == "" {
		return errors.New("an RP ID is not empty")
	}
	*l = append(*l, v)
	return nil
}

var _ flag.Value = (*rpIDList)(nil)

func showSettings(w io.Writer, s *control.Settings) {
	onOff := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(w, "alwaysUv:           %s\n", onOff[s.AlwaysUV])
	fmt.Fprintf(w, "minimum PIN length: %d\n", s.MinPINLength)
	fmt.Fprintf(w, "forcePINChange:     %s\n", onOff[s.ForcePINChange])
	fmt.Fprintf(w, "minPinLength RPs:   %d\n", s.RPIDs)
}

// Config implements control.ConfigHandler: the same rules as
// authenticatorConfig (token.SetSettingsFromCLI), after the PIN (when one
// is set; a wrong one spends a retry, as over CTAP) and an Allow on the
// desktop, asked before the PIN is tried as for `tpm-u2f pin change`.
func (d *daemon) Config(change *control.ConfigChange, pinHash []byte) (control.Settings, error) {
	s, err := applyConfig(d.engine, d.auth, change, pinHash, func() error {
		return d.confirm("change the key's settings (from the command line)")
	})
	if err == nil && change != nil {
		d.log.Info("settings changed from the command line")
	}
	return s, err
}

// applyConfig checks the PIN (when one is set) and applies change through
// auth's rules, after confirm (nil: none, the user is at the command
// line with the daemon stopped); it returns the settings in force.
func applyConfig(engine *tpm.Engine, auth *token.Authenticator, change *control.ConfigChange, pinHash []byte, confirm func() error) (control.Settings, error) {
	if change != nil {
		st, err := engine.PINStatus()
		switch {
		case err != nil:
			return control.Settings{}, controlPINError(err)
		case st.Set && pinHash == nil:
			return control.Settings{}, control.ErrPINRequired
		case st.Set && st.Retries == 0:
			return control.Settings{}, control.ErrPINBlocked
		}
		if confirm != nil {
			if err := confirm(); err != nil {
				return control.Settings{}, err
			}
		}
		if st.Set {
			retries, err := engine.CheckPIN(pinHash)
			if err != nil {
				return control.Settings{}, control.PINError(controlPINError(err), retries)
			}
		}
		if err := auth.SetSettingsFromCLI(change.AlwaysUV, change.MinPINLength, change.ForcePINChange, change.RPIDs); err != nil {
			return control.Settings{}, settingsError(auth, err)
		}
	}
	s, err := auth.Settings()
	if err != nil {
		return control.Settings{}, err
	}
	st, _ := engine.PINStatus()
	return control.Settings{AlwaysUV: s.AlwaysUV, MinPINLength: max(pin.MinLength, s.MinPINLength),
		ForcePINChange: s.ForcePINChange, RPIDs: len(s.MinPINLengthRPIDs), PINSet: st.Set}, nil
}

// settingsError says in words why a change was refused.
func settingsError(auth *token.Authenticator, err error) error {
	switch ctap2.StatusOf(err) {
	case ctap2.ErrPINPolicyViolation:
		s, _ := auth.Settings()
		return fmt.Errorf("the minimum PIN length can only grow (it is %d)", max(pin.MinLength, s.MinPINLength))
	case ctap2.ErrKeyStoreFull:
		return fmt.Errorf("at most %d RP IDs", token.MaxMinPINLengthRPIDs)
	case ctap2.ErrPINNotSet:
		return errors.New("no PIN is set: there is no PIN to force a change of")
	}
	return err
}

// minPINLengthOf is the minimum PIN length in force where b sets the PIN.
// The control socket carries only a PIN's hash, so the daemon cannot count
// a new PIN's characters: this command does, against the key's minimum.
// On any failure to read it, CTAP's 4 (the daemon still has the PIN rules
// of CTAP for everything else).
func minPINLengthOf(b pinBackend) int {
	switch b := b.(type) {
	case daemonPIN:
		if rsp, err := control.Call(string(b), control.Request{Command: "config"}); err == nil && rsp.Settings != nil {
			return rsp.Settings.MinPINLength
		}
	case *directPIN:
		if s, err := b.engine.Settings(); err == nil {
			return max(pin.MinLength, s.MinPINLength)
		}
	}
	return pin.MinLength
}

func checkMinLength(p []byte, minLength int) error {
	if utf8.RuneCount(p) < minLength {
		return fmt.Errorf("PIN too short: at least %d characters (the key's minimum; tpm-u2f config)", minLength)
	}
	return nil
}
