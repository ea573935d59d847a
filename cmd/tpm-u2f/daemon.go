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
		TPMCommandStats: d.meter.Snapshot().String(),
	}
}

func (d *daemon) Lock() { d.auth.Lock() }

// Unlock needs no PIN yet: the PIN issue adds one where a PIN is set.
func (d *daemon) Unlock() error { d.auth.Unlock(); return nil }

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

// The tray's view of the daemon.

func (d *daemon) Locked() bool { return d.auth.Locked() }

func (d *daemon) Attention() string {
	if st := d.store.Status(); !st.Healthy {
		return "the replay store is failing closed: no signatures until " + st.FailClosedUntil.Local().Format(time.TimeOnly)
	}
	return ""
}

func (d *daemon) Quit() { d.quit() }
