package token

import (
	"context"
	"errors"
)

// ErrPINAuthBlocked: three wrong PINs in a row in this power cycle; no
// PIN is checked until a re-plug (CTAP 2.1 sections 6.5.5.6 and 6.5.5.7:
// three consecutive mismatches, then PIN_AUTH_BLOCKED).
var ErrPINAuthBlocked = errors.New("token: 3 wrong PINs in a row: re-plug the key")

// CheckPIN checks a PIN that reached the daemon another way than CTAP
// (its control socket: the command line, pinentry) under the rules of
// clientPIN's: the same per-power-cycle count of wrong PINs in a row and
// the same delay after a failure, so that no way into the daemon offers
// more guesses between re-plugs than CTAP does. The TPM counts every
// wrong PIN as well.
func (a *Authenticator) CheckPIN(ctx context.Context, pinHash []byte) (retries int, err error) {
	if a.cfg.PIN == nil {
		return 0, errors.New("token: no PIN store")
	}
	s := &a.pin
	s.mu.Lock()
	defer s.mu.Unlock()
	retries, err = a.throttledPINCheck(ctx, s, "control socket", func() (int, error) { return a.cfg.PIN.CheckPIN(pinHash) })
	return retries, err
}

// WrongPINsInARow is the number of wrong PINs in a row in this power
// cycle; at pin.MaxConsecutive no PIN is checked until a re-plug
// (getPINRetries' powerCycleState).
func (a *Authenticator) WrongPINsInARow() int {
	return a.pin.throttle.Consecutive()
}
