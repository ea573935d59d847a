package main

import (
	"log/slog"

	"github.com/tpm-u2f/tpm-u2f/control"
	"github.com/tpm-u2f/tpm-u2f/replay"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// daemon answers the control socket with the running parts.
type daemon struct {
	f      runFlags
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
