// Package presence owns the question "is the user here, and do they agree?"
// that a security key answers with a button. The token asks through the
// one-method Prompter interface; implementations are the explicit
// always-approve test mode here and, later, a D-Bus desktop prompt.
package presence

import (
	"context"
	"errors"
	"log/slog"
)

// Request describes what the user is asked to approve.
type Request struct {
	// Operation is a short verb phrase: "register", "sign in", "reset".
	Operation string
	// RelyingParty names the site: an RP ID, or an appID hash in hex when
	// U2F gives us nothing better.
	RelyingParty string
}

// ErrDenied is returned when the user said no; ErrTimeout when nobody
// answered in time.
var (
	ErrDenied  = errors.New("presence: denied by the user")
	ErrTimeout = errors.New("presence: no answer in time")
)

// Prompter asks the user. Confirm returns nil when the user approved,
// ErrDenied or ErrTimeout when not, ctx.Err() when the request was
// cancelled, and any other error when the question could not be asked.
// Confirm must return promptly once ctx is done.
type Prompter interface {
	Confirm(ctx context.Context, req Request) error
}

// Always approves every request without asking anyone. It exists for tests
// and the demo only; it turns the token into a key that signs for whoever
// can reach it, so it is never the default and logs a warning each time.
type Always struct {
	Log *slog.Logger
}

// Confirm implements Prompter.
func (a Always) Confirm(ctx context.Context, req Request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.Log != nil {
		a.Log.Warn("presence approved automatically (--presence=always: test mode)", "operation", req.Operation, "rp", req.RelyingParty)
	}
	return nil
}
