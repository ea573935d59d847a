package token

import (
	"context"
	"fmt"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// resetWindow is how long after power-up a reset is accepted (CTAP 2.1
// section 6.6): a remote site cannot wipe a key that has been plugged in
// for a while.
const resetWindow = 10 * time.Second

// reset implements authenticatorReset: within 10 s of power-up, with the
// user's consent, every credential is wiped for good.
func (a *Authenticator) reset(ctx context.Context, setStatus func(byte)) error {
	if a.cfg.Reset == nil {
		return ctap2.ErrNotAllowed
	}
	if a.cfg.Now().Sub(time.Unix(0, a.powerUp.Load())) > resetWindow {
		a.log.Info("ctap2 reset refused: only within 10 s of plugging the key in (tpm-u2f replug)")
		return ctap2.ErrNotAllowed
	}
	if err := a.askUser(ctx, presence.Request{Operation: "reset the key and delete every credential on it"}, setStatus); err != nil {
		return err
	}
	if err := a.cfg.Reset(); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	a.clearNext()
	a.blobs.clear()
	a.gate.reset()
	a.pin.powerCycle() // the PIN is gone, and with it every pinUvAuthToken
	a.ResetPINToken()  // the persistent one too, which a re-plug keeps
	a.log.Warn("the key was reset: every credential is gone")
	return nil
}
