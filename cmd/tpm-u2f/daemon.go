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
	"github.com/tpm-u2f/tpm-u2f/internal/opstats"
	"github.com/tpm-u2f/tpm-u2f/pin"
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
	ops    *opstats.Recorder // nil without --stats
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
		OperationStats:  d.ops.String(),
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

// Unlock from the control socket (`tpm-u2f unlock`), which any process
// of the user can reach: it asks what a locked key needs from the user,
// the PIN through the desktop's pinentry where one is set (checked by the
// TPM, counted like any PIN), else the desktop's Allow. The tray's Unlock
// is trayView's: the click is the user's.
func (d *daemon) Unlock() error {
	if !d.auth.Locked() {
		return nil
	}
	if err := d.authorize("unlock the key", nil, "Enter the security key's PIN to unlock it."); err != nil {
		return err
	}
	d.auth.Unlock()
	return nil
}

// authorize asks what CTAP asks before the same thing over USB (a
// pinUvAuthToken for credential management, presence where no PIN is
// set): where a PIN is set, the PIN, given as h or, when h is nil, typed
// into the desktop's pinentry, and checked under the token's rules (three
// wrong in a row, then a re-plug); else the desktop's Allow for what.
func (d *daemon) authorize(what string, h []byte, description string) error {
	st, err := d.engine.PINStatus()
	switch {
	case err != nil:
		return controlPINError(err)
	case !st.Set:
		return d.confirm(what + " (from the command line)")
	case st.Retries == 0:
		return control.ErrPINBlocked
	}
	if h != nil {
		return d.pinError(d.checkPIN(h))
	}
	return d.askPIN(description)
}

// askPIN asks for the PIN through pinentry, up to three times, saying how
// many retries the TPM has left.
func (d *daemon) askPIN(description string) error {
	prompt := pinentry.Prompt{Title: "tpm-u2f", Prompt: "PIN:", Description: description}
	for range 3 {
		if d.authBlocked() {
			return control.ErrPINAuthBlocked // asked before pinentry shows anything
		}
		p, err := pinentry.Ask(context.Background(), d.f.pinentry, prompt)
		if err != nil {
			if errors.Is(err, pinentry.ErrCancelled) {
				return errors.New("cancelled in pinentry")
			}
			return fmt.Errorf("a PIN is set, and %s could not ask for it: %w (install pinentry-gnome3 or pinentry-qt, or pass --pinentry)", d.f.pinentry, err)
		}
		h := sha256.Sum256(p)
		clear(p)
		retries, err := d.checkPIN(h[:16])
		clear(h[:])
		if !errors.Is(err, control.ErrWrongPIN) || d.authBlocked() || retries == 0 {
			return d.pinError(retries, err)
		}
		prompt.Error = fmt.Sprintf("Wrong PIN: %d retries left", retries)
	}
	return control.ErrPINAuthBlocked // not reached: three wrong PINs block
}

// pinError is what the user sees for checkPIN's answer: a wrong PIN with
// the retries left, and, when it was the third in a row, that a re-plug
// must come first.
func (d *daemon) pinError(retries int, err error) error {
	if !errors.Is(err, control.ErrWrongPIN) {
		return err
	}
	err = control.PINError(err, retries)
	if d.authBlocked() && retries > 0 {
		return fmt.Errorf("%w; %w", err, control.ErrPINAuthBlocked)
	}
	return err
}

// checkPIN checks h through the token, so that a PIN from the control
// socket counts toward the same three-in-a-row limit as CTAP's.
func (d *daemon) checkPIN(h []byte) (int, error) {
	retries, err := d.auth.CheckPIN(context.Background(), h)
	switch {
	case err == nil:
		return retries, nil
	case errors.Is(err, token.ErrPINAuthBlocked):
		return 0, control.ErrPINAuthBlocked
	case errors.Is(err, token.ErrWrongPIN):
		d.log.Warn("wrong PIN given on the control socket", "retries", retries)
		return retries, control.ErrWrongPIN
	case errors.Is(err, token.ErrPINBlocked):
		return 0, control.ErrPINBlocked
	}
	return retries, controlPINError(err)
}

// authBlocked: three wrong PINs in a row wait for a re-plug.
func (d *daemon) authBlocked() bool { return d.auth.WrongPINsInARow() >= pin.MaxConsecutive }

// Replug from the control socket (or SIGHUP): a re-plug starts a new
// power cycle, and with it three new PIN tries (CTAP 2.1 6.5.5.6 and
// 6.5.5.7: three consecutive mismatches, then PIN_AUTH_BLOCKED until a
// power cycle). Any
// process of the user can ask for one, so after a wrong PIN in this
// power cycle it needs the desktop's Allow, as unplugging a key needs the
// user's hand; otherwise two guesses and a re-plug, again and again,
// would never meet the three-in-a-row limit.
func (d *daemon) Replug() error {
	if n := d.auth.WrongPINsInARow(); n > 0 {
		wrong := "a wrong PIN"
		if n > 1 {
			wrong = fmt.Sprintf("%d wrong PINs in a row", n)
		}
		if err := d.confirm("re-plug the key, after " + wrong + " (from the command line)"); err != nil {
			return err
		}
	}
	replug(d.replug, d.auth, d.log)
	return nil
}

// Credentials lists what credentialManagement would, after what it needs
// (authorize): sites and account names are the user's to see.
func (d *daemon) Credentials(h []byte) ([]control.Credential, error) {
	if err := d.authorize("list your passkeys (sites and account names)", h, "Enter the security key's PIN to list its passkeys."); err != nil {
		return nil, err
	}
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

// DeleteCredential needs what credentialManagement's deleteCredential
// needs, the PIN where one is set (asked before the ID is looked up, so
// that no answer tells an unauthenticated process which IDs exist), and
// the desktop's Allow in any case: it cannot be undone.
func (d *daemon) DeleteCredential(prefix string, h []byte) error {
	if prefix == "" {
		return errors.New("give the ID that `tpm-u2f credentials list` shows")
	}
	const what = "delete a passkey"
	if err := d.authorize(what, h, "Enter the security key's PIN to delete a passkey."); err != nil {
		return err
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
	if set, _, _ := d.PINStatus(); set { // else authorize was this Allow
		if err := d.confirm(what + " (from the command line)"); err != nil {
			return err
		}
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
	// Checked through the token first, so that a wrong old PIN counts
	// toward CTAP's three in a row, and none is tried after three.
	if retries, err := d.checkPIN(old); err != nil {
		return retries, err
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

// trayView is the tray's view of the daemon. Its menu clicks count only
// from the tray host (package tray), so a click is the user's own: Unlock
// asks for the PIN where one is set and nothing more, Re-plug nothing.
type trayView struct{ *daemon }

func (t trayView) Unlock() error {
	if !t.auth.Locked() {
		return nil
	}
	st, err := t.engine.PINStatus()
	switch {
	case err != nil:
		return controlPINError(err)
	case st.Set && st.Retries == 0:
		return control.ErrPINBlocked
	case st.Set:
		if err := t.askPIN("Enter the security key's PIN to unlock it."); err != nil {
			return err
		}
	}
	t.auth.Unlock()
	return nil
}

func (t trayView) Replug() error {
	replug(t.replug, t.auth, t.log)
	return nil
}

// What the tray reads (through trayView).

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
