package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// PINStore keeps the PIN where the token cannot be talked out of its
// retry count: package tpm's Engine through TPMPIN. Hashes are CTAP's
// pinHash, LEFT(SHA-256(PIN), 16).
type PINStore interface {
	// PINStatus reports whether a PIN is set and the retries left.
	PINStatus() (set bool, retries int, err error)
	SetPIN(pinHash []byte) error
	// ChangePIN checks oldHash like CheckPIN, then replaces the PIN.
	ChangePIN(oldHash, newHash []byte) (retries int, err error)
	// CheckPIN is nil for the right PIN, ErrWrongPIN (with the retries
	// left) for a wrong one, ErrPINBlocked when no retries are left.
	CheckPIN(pinHash []byte) (retries int, err error)
}

var (
	ErrWrongPIN   = errors.New("token: wrong PIN")
	ErrPINBlocked = errors.New("token: PIN blocked")
)

// pinUvAuthToken usage timer (CTAP 2.1 section 6.5.2.1,
// pinUvAuthTokenUsageTimerObserver): a token not used within initialUsage
// of beginUsingPinUvAuthToken stops, and a used one stops maxUsage after
// it began (the spec's maximum usage time period, at most 10 minutes).
const (
	initialUsage = 30 * time.Second
	maxUsage     = 10 * time.Minute
)

// pinState is the volatile PIN state of one power cycle (section 6.5.2):
// the key agreement key, the pinUvAuthToken and its state, and the
// consecutive-failure throttle. A re-plug replaces all of it.
//
// The token's state is section 6.5.2.1's: in use (token != nil),
// permissions, a permissions RP ID, the user verified flag and the usage
// timer. The user present flag (up) is set only by built-in UV
// (getPinUvAuthTokenUsingUvWithPermissions: a finger on the reader is
// evidence of user interaction, uv.go); the PIN variants begin with
// userIsPresent false, so with a PIN token every makeCredential and
// up=true getAssertion collects presence itself.
type pinState struct {
	mu       sync.Mutex
	ka       *pin.KeyAgreement
	token    []byte
	proto    pin.Protocol
	perms    uint64
	rpID     string // the permissions RP ID; "" until bound
	uv       bool   // the user verified flag
	up       bool   // the user present flag
	issued   time.Time
	used     bool
	throttle pin.Throttle
	// The persistentPinUvAuthToken (CTAP 2.2, pcmr permission): its own
	// token, for credentialManagement's read-only subcommands only; no
	// usage timer, not consumed by use, kept across re-plugs (a power
	// cycle of this key); it ends with a PIN change, a reset, Lock, a new
	// pcmr token, and the daemon's end (it is never written down).
	persist      []byte
	persistProto pin.Protocol
}

// resetPersistent ends the persistentPinUvAuthToken. Called with mu held.
func (s *pinState) resetPersistent() {
	pin.Zero(s.persist)
	s.persist, s.persistProto = nil, nil
}

// resetToken invalidates the pinUvAuthToken (resetPinUvAuthToken, which
// includes stopUsingPinUvAuthToken). Called with mu held.
func (s *pinState) resetToken() {
	pin.Zero(s.token)
	s.token, s.proto, s.perms, s.rpID, s.uv, s.up, s.used = nil, nil, 0, "", false, false, false
}

// observeTimer stops a token whose usage timer ran out
// (pinUvAuthTokenUsageTimerObserver). Called with mu held.
func (s *pinState) observeTimer(now time.Time) {
	if s.token != nil && (now.Sub(s.issued) > maxUsage || !s.used && now.Sub(s.issued) > initialUsage) {
		s.resetToken()
	}
}

// presenceCollected is what makeCredential (section 6.1.2) and
// getAssertion with up=true (section 6.2.2) do in their "up" step once the
// user was present: clearUserPresentFlag, clearUserVerifiedFlag and
// clearPinUvAuthTokenPermissionsExceptLbw. One pinUvAuthToken therefore
// gives one user-verified operation with presence; the platform asks for a
// new one for the next (python-fido2 and libfido2 get a token per
// operation). Silent (up=false) assertions leave the token as it was.
func (a *Authenticator) presenceCollected() {
	s := &a.pin
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uv, s.up = false, false
	s.perms &= ctap2.PermLargeBlobWrite
}

// regenerate replaces the key agreement key (after every PIN error, so a
// platform that saw an error must start again; seed 002). Called with mu
// held.
func (s *pinState) regenerate() error {
	ka, err := pin.NewKeyAgreement()
	if err != nil {
		return err
	}
	s.ka = ka
	return nil
}

// powerCycle drops everything: a fresh key agreement key, no token, the
// consecutive-failure count back to zero.
func (s *pinState) powerCycle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetToken()
	s.ka = nil
	s.throttle.Reset()
}

func (a *Authenticator) pinSet() (bool, error) {
	if a.cfg.PIN == nil {
		return false, nil
	}
	set, _, err := a.cfg.PIN.PINStatus()
	if errors.Is(err, ErrPINBlocked) {
		return true, nil
	}
	return set, err
}

// clientPIN implements authenticatorClientPIN (section 6.5.5).
func (a *Authenticator) clientPIN(ctx context.Context, req *ctap2.ClientPINRequest, setStatus func(byte)) ([]byte, error) {
	if a.cfg.PIN == nil {
		return nil, ctap2.ErrInvalidCommand
	}
	var proto pin.Protocol
	if req.PinUvAuthProtocol != nil {
		p, ok := pin.ProtocolByVersion(int(min(*req.PinUvAuthProtocol, 1<<16)))
		if !ok {
			return nil, ctap2.ErrInvalidParameter
		}
		proto = p
	}
	sub := *req.SubCommand
	if proto == nil && sub != ctap2.PINGetRetries && sub != ctap2.PINGetUVRetries {
		return nil, ctap2.ErrMissingParameter
	}
	s := &a.pin
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ka == nil {
		if err := s.regenerate(); err != nil {
			return nil, err
		}
	}
	switch sub {
	case ctap2.PINGetRetries:
		set, retries, err := a.cfg.PIN.PINStatus()
		switch {
		case errors.Is(err, ErrPINBlocked):
			retries = 0
		case err != nil:
			return nil, err
		case !set:
			// Not "0 retries", which clients read as a blocked PIN: what
			// current YubiKeys answer. python-fido2's client never asks
			// before a PIN is set; libfido2's `fido2-token -I` asks and
			// prints "pin retries: undefined".
			return nil, ctap2.ErrPINNotSet
		}
		r := uint64(retries)
		pc := s.throttle.Consecutive() >= pin.MaxConsecutive
		return ctap2.Marshal(ctap2.ClientPINResponse{PinRetries: &r, PowerCycleState: &pc})
	case ctap2.PINGetKeyAgreement:
		x, y := s.ka.PublicXY()
		return ctap2.Marshal(ctap2.ClientPINResponse{KeyAgreement: &ctap2.COSEKey{Kty: 2, Alg: ctap2.AlgECDHESHKDF256, Crv: 1, X: x, Y: y}})
	case ctap2.PINSet:
		return nil, a.setPIN(s, proto, req)
	case ctap2.PINChange:
		return nil, a.changePIN(ctx, s, proto, req)
	case ctap2.PINGetToken:
		if req.Permissions != nil || req.RPID != nil {
			return nil, ctap2.ErrInvalidParameter
		}
		return a.getPinToken(ctx, s, proto, req, ctap2.PermMakeCredential|ctap2.PermGetAssertion, "")
	case ctap2.PINGetTokenUsingPINWithPerms:
		if req.Permissions == nil {
			return nil, ctap2.ErrMissingParameter
		}
		perms := *req.Permissions
		if perms == 0 {
			return nil, ctap2.ErrInvalidParameter
		}
		if perms&ctap2.PermPersistentCredMgmtRO != 0 && a.cfg.Resident != nil {
			// pcmr is a token of its own, for read-only credential
			// management: asked for alone and unbound to an RP.
			if perms != ctap2.PermPersistentCredMgmtRO || req.RPID != nil {
				return nil, ctap2.ErrInvalidParameter
			}
			return a.getPinToken(ctx, s, proto, req, perms, "")
		}
		rpID, err := a.tokenRequest(perms, req.RPID)
		if err != nil {
			return nil, err
		}
		return a.getPinToken(ctx, s, proto, req, perms, rpID)
	case ctap2.PINGetTokenUsingUVWithPerms:
		return a.getTokenUsingUV(ctx, s, proto, req, setStatus)
	case ctap2.PINGetUVRetries:
		return a.getUVRetries()
	}
	return nil, ctap2.ErrInvalidSubcommand
}

// sharedSecret runs the key agreement with the platform's key.
func sharedSecret(s *pinState, proto pin.Protocol, key *ctap2.COSEKey) ([]byte, error) {
	if key == nil {
		return nil, ctap2.ErrMissingParameter
	}
	if key.Kty != 2 || key.Crv != 1 {
		return nil, ctap2.ErrInvalidParameter
	}
	shared, err := s.ka.SharedSecret(proto, key.X, key.Y)
	if err != nil {
		return nil, ctap2.ErrInvalidParameter
	}
	return shared, nil
}

// decryptNewPIN checks newPinEnc and returns the new PIN's hash and its
// length in code points. A PIN shorter than minLength (the minimum in
// force, which setMinPINLength may have raised) is PIN_POLICY_VIOLATION
// (sections 6.5.5.5 and 6.5.5.6).
func decryptNewPIN(proto pin.Protocol, shared, newPinEnc []byte, minLength int) ([]byte, int, error) {
	padded, err := proto.Decrypt(shared, newPinEnc)
	if err != nil {
		return nil, 0, ctap2.ErrInvalidParameter
	}
	defer pin.Zero(padded)
	p, err := pin.Unpad(padded)
	if err != nil {
		return nil, 0, ctap2.ErrPINPolicyViolation
	}
	if err := pin.Validate(p); err != nil {
		return nil, 0, ctap2.ErrPINPolicyViolation
	}
	n := utf8.RuneCount(p)
	if n < minLength {
		return nil, 0, ctap2.ErrPINPolicyViolation
	}
	h := sha256.Sum256(p)
	defer pin.Zero(h[:])
	return bytes.Clone(h[:16]), n, nil
}

func (a *Authenticator) setPIN(s *pinState, proto pin.Protocol, req *ctap2.ClientPINRequest) error {
	if req.KeyAgreement == nil || req.PinUvAuthParam == nil || req.NewPinEnc == nil {
		return ctap2.ErrMissingParameter
	}
	set, err := a.pinSet()
	if err != nil {
		return err
	}
	if set {
		return ctap2.ErrPINAuthInvalid // section 6.5.5.5: "If a PIN has already been set"
	}
	shared, err := sharedSecret(s, proto, req.KeyAgreement)
	if err != nil {
		return err
	}
	defer pin.Zero(shared)
	if !proto.Verify(shared, req.NewPinEnc, req.PinUvAuthParam) {
		return ctap2.ErrPINAuthInvalid
	}
	st, err := a.settings()
	if err != nil {
		return err
	}
	h, n, err := decryptNewPIN(proto, shared, req.NewPinEnc, minPINLength(st))
	if err != nil {
		return err
	}
	defer pin.Zero(h)
	if err := a.cfg.PIN.SetPIN(h); err != nil {
		return err
	}
	a.pinChanged(n)
	a.log.Info("PIN set")
	return nil
}

// checkPINHash decrypts pinHashEnc and has check (the PIN store's
// CheckPIN, or its ChangePIN) decide on it, applying the power-cycle
// throttle and the delay after failures. Every failure regenerates the key
// agreement key and drops the pinUvAuthToken.
func (a *Authenticator) checkPINHash(ctx context.Context, s *pinState, proto pin.Protocol, shared, pinHashEnc []byte, check func(pinHash []byte) (int, error)) (err error) {
	defer func() {
		if err != nil {
			s.resetToken()
			if rerr := s.regenerate(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	retries, cerr := a.throttledPINCheck(ctx, s, "ctap2", func() (int, error) {
		h, err := proto.Decrypt(shared, pinHashEnc)
		defer pin.Zero(h)
		if err != nil || len(h) != 16 {
			return 0, ctap2.ErrInvalidParameter
		}
		return check(h)
	})
	switch {
	case errors.Is(cerr, ErrPINAuthBlocked):
		return ctap2.ErrPINAuthBlocked
	case ctx.Err() != nil && errors.Is(cerr, ctx.Err()):
		return ctap2.ErrKeepaliveCancel
	case cerr == nil:
		return nil
	case errors.Is(cerr, ErrWrongPIN):
		if retries == 0 {
			return ctap2.ErrPINBlocked
		}
		if s.throttle.Consecutive() >= pin.MaxConsecutive {
			return ctap2.ErrPINAuthBlocked
		}
		return ctap2.ErrPINInvalid
	case errors.Is(cerr, ErrPINBlocked):
		return ctap2.ErrPINBlocked
	}
	return cerr
}

func (a *Authenticator) changePIN(ctx context.Context, s *pinState, proto pin.Protocol, req *ctap2.ClientPINRequest) error {
	if req.KeyAgreement == nil || req.PinUvAuthParam == nil || req.NewPinEnc == nil || req.PinHashEnc == nil {
		return ctap2.ErrMissingParameter
	}
	set, retries, err := a.cfg.PIN.PINStatus()
	switch {
	case errors.Is(err, ErrPINBlocked):
		return ctap2.ErrPINBlocked
	case err != nil:
		return err // the TPM failed: not the user's PIN
	case set && retries == 0:
		return ctap2.ErrPINBlocked
	}
	if !set {
		return ctap2.ErrPINNotSet
	}
	shared, err := sharedSecret(s, proto, req.KeyAgreement)
	if err != nil {
		return err
	}
	defer pin.Zero(shared)
	if !proto.Verify(shared, append(bytes.Clone(req.NewPinEnc), req.PinHashEnc...), req.PinUvAuthParam) {
		return ctap2.ErrPINAuthInvalid
	}
	// The new PIN is checked before the old one, so a malformed new PIN
	// costs no retry. The store checks the old PIN and re-arms in one go.
	st, err := a.settings()
	if err != nil {
		return err
	}
	newHash, n, err := decryptNewPIN(proto, shared, req.NewPinEnc, minPINLength(st))
	if err != nil {
		return err
	}
	defer pin.Zero(newHash)
	change := func(oldHash []byte) (int, error) { return a.cfg.PIN.ChangePIN(oldHash, newHash) }
	if err := a.checkPINHash(ctx, s, proto, shared, req.PinHashEnc, change); err != nil {
		return err
	}
	s.resetToken()
	s.resetPersistent()
	a.pinChanged(n)
	a.log.Info("PIN changed")
	return nil
}

func (a *Authenticator) getPinToken(ctx context.Context, s *pinState, proto pin.Protocol, req *ctap2.ClientPINRequest, perms uint64, rpID string) ([]byte, error) {
	if req.KeyAgreement == nil || req.PinHashEnc == nil {
		return nil, ctap2.ErrMissingParameter
	}
	set, retries, err := a.cfg.PIN.PINStatus()
	switch {
	case errors.Is(err, ErrPINBlocked):
		return nil, ctap2.ErrPINBlocked
	case err != nil:
		return nil, err // the TPM failed: not the user's PIN
	case set && retries == 0:
		return nil, ctap2.ErrPINBlocked
	}
	if !set {
		return nil, ctap2.ErrPINNotSet
	}
	shared, err := sharedSecret(s, proto, req.KeyAgreement)
	if err != nil {
		return nil, err
	}
	defer pin.Zero(shared)
	if err := a.checkPINHash(ctx, s, proto, shared, req.PinHashEnc, a.cfg.PIN.CheckPIN); err != nil {
		return nil, err
	}
	a.uvRetriesAfterPIN()
	// Section 6.5.5.7.1/6.5.5.7.2: once the PIN is verified (its
	// retries restored), a forced change comes first: no token until
	// changePIN.
	if st, err := a.settings(); err != nil {
		return nil, err
	} else if st.ForcePINChange {
		s.resetToken()
		return nil, ctap2.ErrPINPolicyViolation
	}
	if perms == ctap2.PermPersistentCredMgmtRO {
		tok, enc, err := newEncryptedToken(proto, shared)
		if err != nil {
			return nil, err
		}
		s.resetPersistent()
		s.persist, s.persistProto = tok, proto
		return ctap2.Marshal(ctap2.ClientPINResponse{PinUvAuthToken: enc})
	}
	s.resetToken()
	tok, enc, err := newEncryptedToken(proto, shared)
	if err != nil {
		return nil, err
	}
	// beginUsingPinUvAuthToken(userIsPresent: false) (section 6.5.5.7.2).
	s.token, s.proto, s.perms, s.rpID, s.uv, s.issued = tok, proto, perms, rpID, true, a.cfg.Now()
	return ctap2.Marshal(ctap2.ClientPINResponse{PinUvAuthToken: enc})
}

// verifyPinUvAuth checks a pinUvAuthParam over msg against the current
// pinUvAuthToken (sections 6.1.2, 6.2.2 and 6.8): the token
// must be in use (its usage timer not run out), come from the same
// protocol, carry perm, for makeCredential and getAssertion still have its
// user verified flag, and be bound to rpID or be unbound (then it is bound
// now). A failure is PIN_AUTH_INVALID. The MAC must have the protocol's
// full length (16 bytes for protocol 1, 32 for protocol 2): pin.Protocol's
// Verify refuses any other, so a truncated protocol 2 MAC (YSA-2025-02)
// never verifies.
func (a *Authenticator) verifyPinUvAuth(protoVersion *uint64, param, msg []byte, perm uint64, rpID string) error {
	proto, err := requiredProtocol(protoVersion)
	if err != nil {
		return err
	}
	s := &a.pin
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observeTimer(a.cfg.Now())
	if s.token == nil || s.proto.Version() != proto.Version() || !proto.Verify(s.token, msg, param) {
		return ctap2.ErrPINAuthInvalid
	}
	if s.perms&perm == 0 {
		return ctap2.ErrPINAuthInvalid
	}
	if perm&(ctap2.PermMakeCredential|ctap2.PermGetAssertion) != 0 && !s.uv {
		return ctap2.ErrPINAuthInvalid // getUserVerifiedFlagValue() is false
	}
	if rpID != "" {
		if s.rpID != "" && s.rpID != rpID {
			return ctap2.ErrPINAuthInvalid
		}
		if perm != ctap2.PermCredMgmt {
			s.rpID = rpID
		}
	}
	s.used = true
	return nil
}

// newEncryptedToken makes a fresh pinUvAuthToken and encrypts it for the
// platform under shared; a token that cannot be sent is zeroed.
func newEncryptedToken(proto pin.Protocol, shared []byte) (tok, enc []byte, err error) {
	tok, err = pin.NewPinUvAuthToken()
	if err != nil {
		return nil, nil, err
	}
	enc, err = proto.Encrypt(shared, tok)
	if err != nil {
		pin.Zero(tok)
		return nil, nil, err
	}
	return tok, enc, nil
}

// requiredProtocol is the pinUvAuthProtocol a pinUvAuthParam must come
// with: MISSING_PARAMETER without one, INVALID_PARAMETER for one we do not
// implement.
func requiredProtocol(version *uint64) (pin.Protocol, error) {
	if version == nil {
		return nil, ctap2.ErrMissingParameter
	}
	proto, ok := pin.ProtocolByVersion(int(min(*version, 1<<16)))
	if !ok {
		return nil, ctap2.ErrInvalidParameter
	}
	return proto, nil
}

// verifyPersistent checks a pinUvAuthParam over msg against the
// persistentPinUvAuthToken. It neither starts nor consults a usage timer
// and does not use the token up.
func (a *Authenticator) verifyPersistent(protoVersion *uint64, param, msg []byte) error {
	proto, err := requiredProtocol(protoVersion)
	if err != nil {
		return err
	}
	s := &a.pin
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.persist == nil || s.persistProto.Version() != proto.Version() || !proto.Verify(s.persist, msg, param) {
		return ctap2.ErrPINAuthInvalid
	}
	return nil
}

// pinUvAuthForRequest applies the pinUvAuthParam rules shared by
// makeCredential and getAssertion (sections 6.1.2 and 6.2.2, steps 1-6):
// a zero-length param is the platform's "touch to select" probe; a
// present one must verify and yields uv; none at all is allowed unless
// required is set (then PUAT_REQUIRED when a PIN exists).
func (a *Authenticator) pinUvAuthForRequest(ctx context.Context, param *[]byte, protoVersion *uint64, cdh []byte, perm uint64, rpID string, probe func() error) (uv bool, err error) {
	if param == nil {
		// alwaysUv: every makeCredential and getAssertion needs user
		// verification, which this key has only through a PIN: a platform
		// is told to get a pinUvAuthToken (PUAT_REQUIRED), or to set a PIN
		// first (PIN_NOT_SET), as OpenSK and trussed's fido-authenticator
		// answer.
		if st, err := a.settings(); err != nil {
			return false, err
		} else if st.AlwaysUV && a.cfg.PIN != nil {
			set, err := a.pinSet()
			if err != nil {
				return false, err
			}
			if !set {
				return false, ctap2.ErrPINNotSet
			}
			return false, ctap2.ErrPUATRequired
		}
		return false, nil
	}
	if a.cfg.PIN == nil {
		// No PIN/UV auth protocol at all (getInfo lists none).
		if protoVersion == nil {
			return false, ctap2.ErrMissingParameter
		}
		return false, ctap2.ErrInvalidParameter
	}
	if len(*param) == 0 {
		if err := probe(); err != nil {
			return false, err
		}
		set, err := a.pinSet()
		if err != nil {
			return false, err
		}
		if set {
			return false, ctap2.ErrPINInvalid
		}
		return false, ctap2.ErrPINNotSet
	}
	if _, err := requiredProtocol(protoVersion); err != nil {
		return false, err
	}
	// A pinUvAuthToken exists only while a PIN is set (setPIN, changePIN,
	// reset and re-plugs drop it), so a MAC that verifies needs no TPM
	// command; only a failure asks the TPM which error it is.
	verr := a.verifyPinUvAuth(protoVersion, *param, cdh, perm, rpID)
	if verr == nil {
		return true, nil
	}
	if set, err := a.pinSet(); err != nil {
		return false, err
	} else if !set {
		return false, ctap2.ErrPINNotSet
	}
	return false, verr
}

// tokenRequest checks the permissions asked for a pinUvAuthToken, by PIN
// or by built-in UV alike (CTAP 2.1 sections 6.5.5.7.2 and 6.5.5.7.3):
// each must be one this key grants, and mc or ga needs an RP ID. It
// returns the RP ID ("" when none was given).
func (a *Authenticator) tokenRequest(perms uint64, rpIDParam *string) (string, error) {
	grantable := ctap2.PermMakeCredential | ctap2.PermGetAssertion | ctap2.PermCredMgmt
	if a.largeBlobsOn() {
		grantable |= ctap2.PermLargeBlobWrite
	}
	if a.cfg.Settings != nil {
		grantable |= ctap2.PermAuthnrConfig
	}
	if perms&^grantable != 0 {
		return "", ctap2.ErrUnauthorizedPerm
	}
	rpID := ""
	if rpIDParam != nil {
		rpID = *rpIDParam
	}
	if perms&(ctap2.PermMakeCredential|ctap2.PermGetAssertion) != 0 && rpID == "" {
		return "", ctap2.ErrMissingParameter
	}
	return rpID, nil
}

// throttledPINCheck runs one PIN check under the power cycle's throttle
// (section 6.5.5.7: three wrong PINs in a row, then a re-plug; seed 004:
// the delay counted from the last failure), whatever way the PIN came
// (clientPIN, or the control socket through CheckPIN): one count for all.
// A check error other than ErrWrongPIN (a TPM fault, a malformed
// pinHashEnc) counts neither way. Called with s.mu held.
func (a *Authenticator) throttledPINCheck(ctx context.Context, s *pinState, via string, check func() (int, error)) (int, error) {
	wait, terr := s.throttle.Admit(a.cfg.Now())
	if terr != nil {
		return 0, ErrPINAuthBlocked
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	retries, err := check()
	switch {
	case err == nil:
		s.throttle.Succeeded()
	case errors.Is(err, ErrWrongPIN):
		s.throttle.Failed(a.cfg.Now())
		a.log.Warn("wrong PIN", "via", via, "retries_left", retries, "consecutive", s.throttle.Consecutive())
	}
	return retries, err
}
