package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tpm-u2f/tpm-u2f/control"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/pinentry"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/replay"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// daemon answers the control socket with the running parts.
type daemon struct {
	f      runFlags
	quit   func()
	ask    presence.Prompter
	manual *presence.Manual // the tray's Allow/Deny
	creds  *credstore.Store
	reset  func() error
	auth   *token.Authenticator
	engine *tpm.Engine
	store  *replay.Store
	meter  *tpm.Meter
	replug func() error
	log    *slog.Logger
}

var _ control.Handler = (*daemon)(nil)

func (d *daemon) Status() control.Status {
	rs := d.store.Status()
	return control.Status{
		Version:         version,
		TPM:             d.f.tpm,
		Transport:       d.f.transport,
		DevicePresent:   true,
		Locked:          d.auth.Locked(),
		Presence:        d.f.presence,
		NextCounter:     d.engine.PeekCounter(),
		ReplayHealthy:   rs.Healthy,
		ReplayUntil:     rs.FailClosedUntil,
		ReplayEntries:   rs.Entries,
		PINRetries:      d.pinRetries(),
		TPMCommandStats: d.meter.Snapshot().String(),
	}
}

// pinRetries is nil when no PIN is set (or its state cannot be read).
func (d *daemon) pinRetries() *int {
	st, err := d.engine.PINStatus()
	if err != nil || !st.Set {
		return nil
	}
	return &st.Retries
}

func (d *daemon) Lock() { d.auth.Lock() }

// Unlock, from the tray or `tpm-u2f unlock`: where a PIN is set, the
// desktop's pinentry asks for it (up to three times, saying how many
// retries the TPM has left), and the TPM checks it like any PIN; a wrong
// one costs a retry. Without a PIN, unlocking needs nothing, as locking
// did not.
func (d *daemon) Unlock() error {
	if !d.auth.Locked() {
		return nil
	}
	st, err := d.engine.PINStatus()
	if err != nil {
		return controlPINError(err)
	}
	if !st.Set {
		d.auth.Unlock()
		return nil
	}
	if st.Retries == 0 {
		return control.ErrPINBlocked
	}
	prompt := pinentry.Prompt{Title: "tpm-u2f", Prompt: "PIN:",
		Description: "Enter the security key's PIN to unlock it."}
	for range 3 {
		p, err := pinentry.Ask(context.Background(), d.f.pinentry, prompt)
		if err != nil {
			if errors.Is(err, pinentry.ErrCancelled) {
				return errors.New("unlock cancelled")
			}
			return fmt.Errorf("a PIN is set, and %s could not ask for it: %w (install pinentry-gnome3 or pinentry-qt, or pass --pinentry)", d.f.pinentry, err)
		}
		h := sha256.Sum256(p)
		clear(p)
		retries, err := d.engine.CheckPIN(h[:16])
		clear(h[:])
		switch {
		case err == nil:
			d.auth.Unlock()
			return nil
		case errors.Is(err, tpm.ErrWrongPIN):
			d.log.Warn("wrong PIN given to unlock", "retries", retries)
			prompt.Error = fmt.Sprintf("Wrong PIN: %d retries left", retries)
		default:
			return controlPINError(err)
		}
	}
	st, _ = d.engine.PINStatus()
	return control.PINError(control.ErrWrongPIN, st.Retries)
}

func (d *daemon) Replug() error {
	replug(d.replug, d.auth, d.log)
	return nil
}

func (d *daemon) Credentials() ([]control.Credential, error) {
	all, err := d.creds.All()
	out := make([]control.Credential, 0, len(all))
	for _, c := range all {
		out = append(out, control.Credential{
			ID: shortID(c.ID), RPID: c.RPID, UserName: c.UserName,
			DisplayName: c.DisplayName, CredProtect: int(c.CredProtect), Created: c.Created,
		})
	}
	return out, err
}

// shortID names a credential for people: a hash of its credential ID
// (whose first bytes are the same for every credential).
func shortID(id []byte) string {
	h := sha256.Sum256(id)
	return hex.EncodeToString(h[:8])
}

func (d *daemon) DeleteCredential(prefix string) error {
	if prefix == "" {
		return errors.New("give the ID that `tpm-u2f credentials list` shows")
	}
	all, _ := d.creds.All()
	var match []byte
	for _, c := range all {
		if strings.HasPrefix(shortID(c.ID), strings.ToLower(prefix)) {
			if match != nil {
				return errors.New("more than one credential has an ID starting like that; give more of it")
			}
			match = c.ID
		}
	}
	if match == nil {
		return errors.New("no discoverable credential has that ID")
	}
	if err := d.confirm("delete a passkey (from the command line)"); err != nil {
		return err
	}
	if err := d.creds.Delete(match); err != nil {
		return err
	}
	d.log.Info("credential deleted from the command line")
	return nil
}

// confirm asks the user on the desktop before a destructive command from
// the control socket: any process of the same user can reach the socket,
// and none of them should wipe credentials without the user's Allow.
func (d *daemon) confirm(what string) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.f.prompt)
	defer cancel()
	if err := d.ask.Confirm(ctx, presence.Request{Operation: what, RelyingParty: "tpm-u2f"}); err != nil {
		return fmt.Errorf("not confirmed on the desktop: %w", err)
	}
	return nil
}

// Reset from the command line: confirmed on the desktop (the CLI also
// asks the user to type "reset"); the 10 s power-up window that keeps
// websites from resetting the key does not apply to the user's own
// command.
func (d *daemon) Reset() error {
	if err := d.confirm("reset the key and delete every credential (from the command line)"); err != nil {
		return err
	}
	if err := d.reset(); err != nil {
		return err
	}
	d.auth.PowerCycle()
	d.log.Warn("the key was reset from the command line: every credential is gone")
	return nil
}

// PINStatus reads the PIN's state from the TPM; no confirmation, it
// reveals only whether a PIN is set and the retries left.
func (d *daemon) PINStatus() (bool, int, error) {
	st, err := d.engine.PINStatus()
	return st.Set, st.Retries, controlPINError(err)
}

// SetPIN from the command line sets the first PIN, after an Allow on the
// desktop: any process of the user can reach the socket, and a PIN it
// chose would lock the user out of CTAP2 sign-ins that ask for one.
func (d *daemon) SetPIN(h []byte) error {
	st, err := d.engine.PINStatus()
	if err != nil {
		return controlPINError(err)
	}
	if st.Set {
		return control.ErrPINSet // refused before asking anyone
	}
	if err := d.confirm("set the key's PIN (from the command line)"); err != nil {
		return err
	}
	if err := d.engine.SetPIN(h); err != nil {
		return controlPINError(err)
	}
	d.auth.PINChangedFromCLI()
	d.log.Info("PIN set from the command line")
	return nil
}

// ChangePIN from the command line, after an Allow on the desktop (asked
// before the old PIN is tried, so that no process can spend the user's
// retries, nor guess, without the user seeing it).
// A pinUvAuthToken a platform obtained with the old PIN ends with it.
func (d *daemon) ChangePIN(old, new []byte) (int, error) {
	st, err := d.engine.PINStatus()
	switch {
	case err != nil:
		return 0, controlPINError(err)
	case !st.Set:
		return 0, control.ErrPINNotSet
	case st.Retries == 0:
		return 0, control.ErrPINBlocked
	}
	if err := d.confirm("change the key's PIN (from the command line)"); err != nil {
		return st.Retries, err
	}
	retries, err := d.engine.ChangePIN(old, new)
	if err != nil {
		if errors.Is(err, tpm.ErrWrongPIN) {
			d.log.Warn("wrong PIN given to change it from the command line", "retries", retries)
		}
		return retries, controlPINError(err)
	}
	d.auth.ResetPINToken()
	d.auth.PINChangedFromCLI()
	d.log.Info("PIN changed from the command line")
	return retries, nil
}

// The tray's view of the daemon.

func (d *daemon) Locked() bool { return d.auth.Locked() }

func (d *daemon) Attention() string {
	if st := d.store.Status(); !st.Healthy {
		return "the replay store is failing closed: no signatures until " + st.FailClosedUntil.Local().Format(time.TimeOnly)
	}
	return ""
}

func (d *daemon) Quit() { d.quit() }

func (d *daemon) Question() string {
	if r, ok := d.manual.Pending(); ok {
		return r.RelyingParty + " asks to " + r.Operation
	}
	return ""
}

func (d *daemon) Answer(allow bool) { d.manual.Answer(allow) }
