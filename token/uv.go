package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd"
)

// Built-in user verification (CTAP 2.1 section 6.5.5.7.3,
// getPinUvAuthTokenUsingUvWithPermissions; getUVRetries; and the CTAP
// 2.0-style "uv" option of makeCredential and getAssertion): a finger on
// the machine's reader, through fprintd, with the PIN as the fallback.

// UVState is what a UserVerifier finds when getInfo asks.
type UVState int

const (
	// UVNoReader: getInfo says nothing about uv.
	UVNoReader UVState = iota
	// UVNothingEnrolled: a reader without an enrolled finger: uv false.
	UVNothingEnrolled
	// UVReady: uv true.
	UVReady
)

// UserVerifier verifies the user with the machine's own reader (package
// uv/fprintd through Fprintd). Verify reports a finger judged during the
// call; ErrUVUnavailable when none could be (no reader, busy, gone), and
// ctx's error when ctx ended. It must release the reader in every case.
type UserVerifier interface {
	Verify(ctx context.Context) (matched bool, err error)
	Probe(ctx context.Context) UVState
}

// UVRetryStore keeps the UV retry count where a restart or a restored
// file cannot give attempts back: package tpm's Engine through
// TPMUVRetries.
type UVRetryStore interface {
	UVRetries() (int, error)
	// SpendUVAttempt counts an attempt before the reader is asked and
	// returns the attempts left after it; ErrUVBlocked with none left.
	SpendUVAttempt() (left int, err error)
	// RefundUVAttempt gives it back when no finger was judged.
	RefundUVAttempt() error
	// ResetUVRetries: after a match or the right PIN.
	ResetUVRetries() error
}

var (
	ErrUVUnavailable = errors.New("token: built-in user verification unavailable")
	ErrUVBlocked     = errors.New("token: built-in user verification blocked")
)

// CTAP 2.1 section 8.2 status codes of built-in UV.
const (
	statusUVBlocked ctap2.Status = 0x3c // CTAP2_ERR_UV_BLOCKED
	statusUVInvalid ctap2.Status = 0x3f // CTAP2_ERR_UV_INVALID
)

// uvModalityFingerprint is USER_VERIFY_FINGERPRINT_INTERNAL (FIDO
// Registry of Predefined Values, 3.1).
const uvModalityFingerprint = 0x02

// Fprintd adapts an fprintd.Verifier to UserVerifier.
type Fprintd struct{ V *fprintd.Verifier }

// Verify implements UserVerifier.
func (f Fprintd) Verify(ctx context.Context) (bool, error) {
	r, err := f.V.Verify(ctx)
	switch {
	case err == nil:
		return r == fprintd.Match, nil
	case errors.Is(err, fprintd.ErrUnavailable), errors.Is(err, fprintd.ErrNoEnrolledFingers):
		return false, fmt.Errorf("%w: %w", ErrUVUnavailable, err)
	}
	return false, err
}

// Probe implements UserVerifier.
func (f Fprintd) Probe(ctx context.Context) UVState {
	switch f.V.Probe(ctx) {
	case fprintd.Ready:
		return UVReady
	case fprintd.NothingEnrolled:
		return UVNothingEnrolled
	}
	return UVNoReader
}

// TPMUVRetries adapts a tpm.Engine to UVRetryStore. An index someone
// replaced counts as blocked (fails closed; the PIN still works).
type TPMUVRetries struct{ Engine *tpm.Engine }

func uvError(err error) error {
	if errors.Is(err, tpm.ErrUVBlocked) || errors.Is(err, tpm.ErrNVIndexForeign) {
		return fmt.Errorf("%w: %w", ErrUVBlocked, err)
	}
	return err
}

func (t TPMUVRetries) UVRetries() (int, error) {
	n, err := t.Engine.UVRetries()
	return n, uvError(err)
}
func (t TPMUVRetries) SpendUVAttempt() (int, error) {
	n, err := t.Engine.SpendUVAttempt()
	return n, uvError(err)
}
func (t TPMUVRetries) RefundUVAttempt() error { return uvError(t.Engine.RefundUVAttempt()) }
func (t TPMUVRetries) ResetUVRetries() error  { return uvError(t.Engine.ResetUVRetries()) }

// uvConfigured: built-in UV is wired (--uv other than none).
func (a *Authenticator) uvConfigured() bool { return a.cfg.UV != nil && a.cfg.UVRetries != nil }

// uvProbeTimeout bounds getInfo's question to fprintd.
const uvProbeTimeout = 2 * time.Second

// uvInfo adds built-in UV to getInfo (section 6.4): the uv option true
// with a reader and an enrolled finger, false with a reader and none,
// absent without a reader; the modality; and preferredPlatformUvAttempts 1
// (our Verify already asks again on fprintd's retry-scan, and each
// non-matching finger costs one of only tpm.UVRetries). The reader is
// asked each time: it comes and goes (suspend, unplug, enrolment).
func (a *Authenticator) uvInfo(info *ctap2.Info) {
	if !a.uvConfigured() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), uvProbeTimeout)
	defer cancel()
	switch a.cfg.UV.Probe(ctx) {
	case UVReady:
		info.Options["uv"] = true
	case UVNothingEnrolled:
		info.Options["uv"] = false
	default:
		return
	}
	info.Options["pinUvAuthToken"] = true
	attempts, modality := uint64(1), uint64(uvModalityFingerprint)
	info.PreferredPlatformUvAttempts, info.UvModality = &attempts, &modality
}

// uvPrompt is what the user reads while the reader waits.
func uvPrompt(op presence.Request) presence.Request {
	op.Operation += " (touch the fingerprint reader)"
	return op
}

// performBuiltInUv asks the reader for one finger (section 6.5.5.7.3's
// performBuiltInUv), counting the attempt in the TPM first: spent before
// the reader is asked, refunded when no finger was judged. Meanwhile the
// user sees our prompt naming the site and the operation, and the client
// KEEPALIVE UPNEEDED; Deny on the prompt, the client's CANCEL or the
// prompt's timeout end the verification, and the reader is released.
//
// Errors: UV_BLOCKED with no attempts left (before or after this one);
// UV_INVALID for a finger that did not match; KEEPALIVE_CANCEL,
// OPERATION_DENIED (Deny) or USER_ACTION_TIMEOUT for the ends above; and
// NOT_ALLOWED when the reader cannot verify now. CTAP 2.1 gives no code
// for "built-in UV is unavailable"; NOT_ALLOWED is what section
// 6.5.5.7.3 answers when uv is not enabled, which is what getInfo says
// then, and it is never a failed verification: it costs no retry.
func (a *Authenticator) performBuiltInUv(ctx context.Context, op presence.Request, setStatus func(byte)) error {
	if a.Locked() {
		return ctap2.ErrOperationDenied
	}
	left, err := a.cfg.UVRetries.SpendUVAttempt()
	if errors.Is(err, ErrUVBlocked) {
		return statusUVBlocked
	}
	if err != nil {
		return err
	}
	setStatus(statusUPNeeded)
	defer setStatus(statusProcessing)
	vctx, cancel := context.WithTimeout(ctx, a.cfg.PresenceTimeout)
	defer cancel()
	denied := make(chan error, 1)
	go func() {
		// The prompt's Approve is no finger: only Deny and the prompt's
		// own timeout end the wait.
		err := a.cfg.Presence.Confirm(vctx, uvPrompt(op))
		if errors.Is(err, presence.ErrDenied) || errors.Is(err, presence.ErrTimeout) {
			denied <- err
			cancel()
		}
		close(denied)
	}()
	matched, verr := a.cfg.UV.Verify(vctx)
	cancel()
	derr := <-denied
	if verr == nil && matched {
		if err := a.cfg.UVRetries.ResetUVRetries(); err != nil {
			a.log.Error("resetting the UV retries after a match", "err", err)
		}
		if a.Locked() {
			// Locked while the reader waited (the screen locked): the
			// finger verified the user, but a locked key does nothing.
			return ctap2.ErrOperationDenied
		}
		a.log.Info("user verified by fingerprint", "operation", op.Operation, "rp", op.RelyingParty)
		return nil
	}
	if verr == nil {
		a.log.Warn("fingerprint did not match", "retries_left", left)
		if left == 0 {
			return statusUVBlocked
		}
		return statusUVInvalid
	}
	if err := a.cfg.UVRetries.RefundUVAttempt(); err != nil {
		a.log.Error("refunding a UV attempt no finger was judged for", "err", err)
	}
	switch {
	case ctx.Err() != nil:
		return ctap2.ErrKeepaliveCancel
	case errors.Is(derr, presence.ErrDenied):
		return ctap2.ErrOperationDenied
	case errors.Is(derr, presence.ErrTimeout), errors.Is(vctx.Err(), context.DeadlineExceeded):
		return ctap2.ErrUserActionTimeout
	case errors.Is(verr, ErrUVUnavailable):
		a.log.Info("built-in user verification unavailable", "reason", verr)
		return ctap2.ErrNotAllowed
	}
	return verr
}

// builtInUV is the CTAP 2.0-style built-in UV of makeCredential and
// getAssertion (sections 6.1.2 and 6.2.2, "uv" option true and no
// pinUvAuthParam): it asks the reader and reports whether the user was
// verified for this request. A request that is not asking, or a token
// without a reader now, is left to the caller's existing checks (an
// unsupported uv option is INVALID_OPTION). A match is also the "evidence
// of user interaction" of section 6.1.2 step 13 / 6.2.2: the caller sets
// UP without asking again.
//
// It also reports presence given with a pinUvAuthToken that built-in UV
// issued (its user present flag, section 6.5.2.1), so the caller does not
// ask again.
func (a *Authenticator) builtInUV(ctx context.Context, options map[string]bool, param *[]byte, uv bool, op presence.Request, setStatus func(byte)) (bool, error) {
	if uv {
		if a.tokenUserPresent() {
			if a.Locked() {
				return false, ctap2.ErrOperationDenied // as askUser would
			}
			return true, nil
		}
		return false, nil
	}
	if param != nil || !ctap2.Option(options, "uv", false) || !a.uvConfigured() {
		return false, nil
	}
	pctx, cancel := context.WithTimeout(ctx, uvProbeTimeout)
	state := a.cfg.UV.Probe(pctx)
	cancel()
	if state != UVReady {
		return false, nil
	}
	if err := a.performBuiltInUv(ctx, op, setStatus); err != nil {
		return false, err
	}
	return true, nil
}

// getUVRetries is clientPIN's getUVRetries (0x07).
func (a *Authenticator) getUVRetries() ([]byte, error) {
	if !a.uvConfigured() {
		return nil, ctap2.ErrInvalidSubcommand
	}
	n, err := a.cfg.UVRetries.UVRetries()
	if errors.Is(err, ErrUVBlocked) {
		n, err = 0, nil
	}
	if err != nil {
		return nil, err
	}
	r := uint64(n)
	return ctap2.Marshal(ctap2.ClientPINResponse{UVRetries: &r})
}

// uvRetriesAfterPIN resets the UV retries after the right PIN (section
// 6.5.5.7.2, "a successful PIN entry resets uvRetries"). A failure costs
// the user nothing now and is logged.
func (a *Authenticator) uvRetriesAfterPIN() {
	if !a.uvConfigured() {
		return
	}
	if err := a.cfg.UVRetries.ResetUVRetries(); err != nil && !errors.Is(err, ErrUVBlocked) {
		a.log.Error("resetting the UV retries after the right PIN", "err", err)
	}
}

// getTokenUsingUV is getPinUvAuthTokenUsingUvWithPermissions (0x06,
// section 6.5.5.7.3). Called with s.mu held; it is released while the
// reader waits, so locking the token is not held up by a finger.
func (a *Authenticator) getTokenUsingUV(ctx context.Context, s *pinState, proto pin.Protocol, req *ctap2.ClientPINRequest, setStatus func(byte)) ([]byte, error) {
	if !a.uvConfigured() {
		return nil, ctap2.ErrInvalidSubcommand
	}
	if req.KeyAgreement == nil || req.Permissions == nil {
		return nil, ctap2.ErrMissingParameter
	}
	perms := *req.Permissions
	if perms == 0 {
		return nil, ctap2.ErrInvalidParameter
	}
	// The same permissions as the PIN grants: libfido2 asks a key with
	// built-in UV and no PIN for an acfg token this way (found by the e2e
	// guest: fido2-token -S -u).
	rpID, err := a.tokenRequest(perms, req.RPID)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, uvProbeTimeout)
	state := a.cfg.UV.Probe(pctx)
	cancel()
	if state != UVReady {
		return nil, ctap2.ErrNotAllowed // section 6.5.5.7.3: uv not enabled
	}
	if n, err := a.cfg.UVRetries.UVRetries(); errors.Is(err, ErrUVBlocked) || err == nil && n == 0 {
		return nil, statusUVBlocked
	} else if err != nil {
		return nil, err
	}
	shared, err := sharedSecret(s, proto, req.KeyAgreement)
	if err != nil {
		return nil, err
	}
	defer pin.Zero(shared)
	op := presence.Request{Operation: "sign in", RelyingParty: rpID}
	switch {
	case perms&ctap2.PermMakeCredential != 0:
		op.Operation = "register"
	case rpID == "":
		op.Operation, op.RelyingParty = "manage credentials", "this computer"
	}
	// Section 6.5.5.7.3 also resets pinRetries after a match. Not here:
	// the PIN's count is a TPM PIN-fail index that only the PIN itself can
	// re-arm (tpm/pinindex.go), so a finger never gives PIN guesses back.
	ka := s.ka
	s.mu.Unlock()
	err = a.performBuiltInUv(ctx, op, setStatus)
	s.mu.Lock()
	if err != nil {
		s.resetToken()
		return nil, err
	}
	if s.ka != ka {
		// Re-plugged (or a PIN error elsewhere) while the reader waited:
		// the platform's shared secret is of a key agreement key that is
		// gone, as after any PIN error (section 6.5.5.7).
		s.resetToken()
		return nil, ctap2.ErrPINAuthInvalid
	}
	s.resetToken()
	tok, enc, err := newEncryptedToken(proto, shared)
	if err != nil {
		return nil, err
	}
	// beginUsingPinUvAuthToken(userIsPresent: true): the finger on the
	// reader was evidence of user interaction (section 6.5.5.7.3), so the
	// next makeCredential or getAssertion does not ask again (once:
	// presenceCollected clears it; within userPresentTimeLimit).
	s.token, s.proto, s.perms, s.rpID, s.uv, s.up, s.issued = tok, proto, perms, rpID, true, true, a.cfg.Now()
	return ctap2.Marshal(ctap2.ClientPINResponse{PinUvAuthToken: enc})
}

// userPresentTimeLimit is how long a built-in UV token's user present
// flag lasts (section 6.5.2.1, pinUvAuthTokenUsageTimerObserver): the
// finger on the reader counts as presence for a request that follows it
// promptly, not for one much later.
const userPresentTimeLimit = initialUsage

// tokenUserPresent reports the pinUvAuthToken's user present flag, just
// verified by the caller.
func (a *Authenticator) tokenUserPresent() bool {
	s := &a.pin
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up && a.cfg.Now().Sub(s.issued) > userPresentTimeLimit {
		s.up = false
	}
	return s.token != nil && s.up
}
