package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/user"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd"
)

// newUV wires built-in user verification for --uv:
//
//   - none: no built-in UV; the PIN is the only user verification.
//   - fprintd: a finger through fprintd on the system bus
//     (dbus.ConnectSystemBus honours DBUS_SYSTEM_BUS_ADDRESS), whatever
//     fprintd has at start: getInfo asks it again each time, so a reader
//     plugged in or a finger enrolled later is used without a restart.
//   - auto (the default): fprintd when, at start, a reader with a finger
//     enrolled for this user is there; none otherwise. A machine whose
//     user never enrolled a finger keeps the PIN-only key it had (getInfo
//     without a uv option, instead of uv false, which invites clients to
//     offer a fingerprint set-up this key cannot do); a user who enrolled
//     one gets the one-touch passkey without knowing the flag.
//
// The returned close ends the system bus connection.
func newUV(ctx context.Context, mode string, engine *tpm.Engine, log *slog.Logger) (token.UserVerifier, token.UVRetryStore, func(), error) {
	none := func() {}
	switch mode {
	case "none":
		return nil, nil, none, nil
	case "auto", "fprintd":
	default:
		return nil, nil, none, fmt.Errorf("--uv: unknown mode %q (want auto, fprintd or none)", mode)
	}
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		if mode == "fprintd" {
			return nil, nil, none, fmt.Errorf("--uv=fprintd: cannot connect to the system bus: %w", err)
		}
		log.Info("no system bus: built-in user verification off", "err", err)
		return nil, nil, none, nil
	}
	u, err := user.Current()
	if err != nil {
		conn.Close()
		return nil, nil, none, fmt.Errorf("--uv: who is the user: %w", err)
	}
	v := fprintd.New(conn, u.Username, log)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	state := v.Probe(pctx)
	cancel()
	if mode == "auto" && state != fprintd.Ready {
		conn.Close()
		log.Info("no fingerprint reader with an enrolled finger: built-in user verification off (enrol one with fprintd-enroll and restart, or run with --uv fprintd)")
		return nil, nil, none, nil
	}
	log.Info("built-in user verification by fingerprint (fprintd)", "reader_ready", state == fprintd.Ready, "retries", tpm.UVRetries)
	return token.Fprintd{V: v}, token.TPMUVRetries{Engine: engine}, func() { conn.Close() }, nil
}
