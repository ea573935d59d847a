// Package pin owns the token's PIN policy: what a valid PIN is (CTAP 2.1
// section 6.5.1 and seed 004), how a padded PIN from a client is checked,
// and how failed attempts are throttled within one power cycle. The retry
// limit itself is enforced by the TPM (package tpm), across processes and
// restarts; this package holds only what is volatile or pure policy.
//
// Concurrency: the functions are pure; a Throttle is safe for concurrent
// use.
package pin

import (
	"bytes"
	"errors"
	"sync"
	"time"
	"unicode/utf8"
)

// CTAP 2.1 PIN limits (section 6.5.1, authenticatorClientPIN).
const (
	// MinLength is the minimum PIN length in Unicode code points.
	MinLength = 4
	// MaxBytes is the maximum PIN length in UTF-8 bytes.
	MaxBytes = 63
	// PaddedLength is the length of a padded PIN as clients send it.
	PaddedLength = 64
	// MaxRetries is the number of wrong PINs before the PIN is blocked
	// until reset.
	MaxRetries = 8
	// MaxConsecutive is the number of wrong PINs in a row after which the
	// token refuses PIN attempts until it is power cycled (re-plugged).
	MaxConsecutive = 3
)

var (
	ErrTooShort    = errors.New("pin: shorter than 4 characters")
	ErrTooLong     = errors.New("pin: longer than 63 bytes")
	ErrInvalidUTF8 = errors.New("pin: not valid UTF-8")
	ErrBadPadding  = errors.New("pin: padded PIN is malformed")
	// ErrPowerCycle: MaxConsecutive wrong PINs in this power cycle.
	ErrPowerCycle = errors.New("pin: too many wrong PINs; re-plug the key")
)

// Validate checks a new PIN. Length is counted in code points, not bytes
// (seed 004): "ääää" is four characters and valid, "äa" is two and not,
// though it is three bytes. Invalid UTF-8 is refused rather than counted as
// bytes, so that the minimum length means the same for everyone.
func Validate(p []byte) error {
	if !utf8.Valid(p) {
		return ErrInvalidUTF8
	}
	if len(p) > MaxBytes {
		return ErrTooLong
	}
	if utf8.RuneCount(p) < MinLength {
		return ErrTooShort
	}
	return nil
}

// Unpad extracts the PIN from a decrypted padded PIN (CTAP 2.1 setPIN and
// changePIN: the PIN followed by zero bytes, 64 bytes in all). Anything
// else — another length, no terminating zero, non-zero bytes after it — is
// ErrBadPadding. The PIN returned aliases padded.
func Unpad(padded []byte) ([]byte, error) {
	if len(padded) != PaddedLength {
		return nil, ErrBadPadding
	}
	n := bytes.IndexByte(padded, 0)
	if n < 0 {
		return nil, ErrBadPadding // 64 bytes of PIN: over MaxBytes anyway
	}
	for _, b := range padded[n:] {
		if b != 0 {
			return nil, ErrBadPadding
		}
	}
	return padded[:n], nil
}

// Zero overwrites b; PINs and keys derived from them are zeroed as soon as
// they are no longer needed.
func Zero(b []byte) {
	clear(b)
}

// Delay is how long the token makes a PIN attempt wait after n consecutive
// failures, counted from the last failure (seed 004: a sleep after each
// failure punishes the user who types fast and does nothing against an
// attacker who waits; the delay from the last failure is what bounds the
// guessing rate). 0 → 0, 1 → 1 s, 2 → 2 s; the third failure ends the
// power cycle's attempts.
func Delay(n int) time.Duration {
	switch {
	case n <= 0:
		return 0
	case n >= MaxConsecutive:
		return 0 // not reached: ErrPowerCycle
	}
	return time.Duration(n) * time.Second
}

// Throttle tracks the failures of one power cycle. Its zero value is ready
// (a fresh power cycle); a re-plug replaces it.
type Throttle struct {
	mu          sync.Mutex
	consecutive int
	last        time.Time
}

// Admit says whether a PIN attempt may be checked now: it returns how long
// the caller must still wait (0: go ahead), or ErrPowerCycle.
func (t *Throttle) Admit(now time.Time) (time.Duration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.consecutive >= MaxConsecutive {
		return 0, ErrPowerCycle
	}
	wait := Delay(t.consecutive) - now.Sub(t.last)
	if wait < 0 || t.consecutive == 0 {
		wait = 0
	}
	return wait, nil
}

// Failed records a wrong PIN at now.
func (t *Throttle) Failed(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.consecutive++
	t.last = now
}

// Succeeded records a correct PIN: the consecutive count starts again.
func (t *Throttle) Succeeded() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.consecutive = 0
}

// Reset starts a new power cycle.
func (t *Throttle) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.consecutive, t.last = 0, time.Time{}
}

// Consecutive is the number of wrong PINs in a row in this power cycle.
func (t *Throttle) Consecutive() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.consecutive
}
