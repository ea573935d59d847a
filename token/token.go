package token

import (
	"context"
	"crypto"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// Keys is what the token needs from the TPM (package tpm's Engine, through
// TPMKeys). Credential keys are only usable inside the callbacks.
type Keys interface {
	// NewCredential creates a key of COSE algorithm alg bound to rp and p
	// and calls fn with its credential ID and the key. The ID carries p,
	// authenticated.
	NewCredential(rp [32]byte, alg int64, p CredentialPolicy, fn func(id []byte, k crypto.Signer) error) error
	// Algorithms lists the COSE algorithms NewCredential can make, in
	// order of preference; it asks the TPM nothing.
	Algorithms() []int64
	// UseCredential loads a credential bound to rp. A credential that is not
	// ours for rp fails with an error wrapping ErrUnknownCredential.
	UseCredential(id []byte, rp [32]byte, fn func(crypto.Signer) error) error
	// Inspect tells, without the TPM, whether id is a credential of ours
	// for rp and the policy it carries, or certainly is not
	// (ErrUnknownCredential). A legacy ID (made before IDs carried a
	// policy) has the zero policy and may still be another
	// installation's: only UseCredential can tell.
	Inspect(id []byte, rp [32]byte) (p CredentialPolicy, legacy bool, err error)
	// NextCounter returns a signature counter value greater than all before.
	NextCounter() (uint32, error)
}

// ReplayGuard refuses to answer the same signing request twice (package
// replay's Store implements it). Check has no side effects; Record is
// durable when it returns. Check fails with an error for a request that
// was answered inside the window, and while the guard fails closed.
type ReplayGuard interface {
	Check(key [32]byte) error
	Record(key [32]byte) error
}

// Config wires an Authenticator.
type Config struct {
	Keys     Keys
	Presence presence.Prompter
	// Replay, when set, is asked before every signature over a request and
	// told after it. Nil means no replay protection.
	Replay ReplayGuard
	// Resident stores discoverable credentials; nil means the token makes
	// none (getInfo says rk: false).
	Resident ResidentStore
	// Secrets derives hmac-secret's CredRandom; nil means no hmac-secret.
	Secrets SecretDeriver
	// LargeBlobs keeps the serialized large-blob array (package
	// largeblob's Store); nil means no authenticatorLargeBlobs and no
	// largeBlobKey. It needs Resident and Secrets as well.
	LargeBlobs LargeBlobStore
	// PIN keeps the clientPIN PIN; nil means the token offers no PIN
	// (getInfo has no clientPin option).
	PIN PINStore
	// Settings keeps authenticatorConfig's settings (alwaysUv, the
	// minimum PIN length, forcePINChange); nil means the token offers no
	// authenticatorConfig and enforces the defaults.
	Settings SettingsStore
	// UV is built-in user verification (a fingerprint through fprintd)
	// and UVRetries its retry count; both nil: none (uv.go).
	UV        UserVerifier
	UVRetries UVRetryStore
	// Reset wipes every credential (authenticatorReset): a new TPM
	// identity, an emptied credential store. Nil refuses resets.
	Reset func() error
	// Now is the clock for the reset window; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// PresenceTimeout bounds one prompt. Default 30 s.
	PresenceTimeout time.Duration
	// ApprovalLifetime is how long an approval waits for the client's next
	// poll before it lapses. Default 10 s.
	ApprovalLifetime time.Duration
	// PromptGrace is how long a request waits for a prompt's answer before
	// it answers "presence required" and lets the client poll. Default
	// 250 ms, about one U2F client polling interval.
	PromptGrace time.Duration
}

// Authenticator is the token core: it answers CTAP1/U2F messages handed up
// by the CTAPHID layer. It is safe for concurrent use.
type Authenticator struct {
	keys    Keys
	log     *slog.Logger
	cfg     Config
	gate    *presenceGate
	closeMu sync.Mutex
	cancel  context.CancelFunc
	locked  atomic.Bool
	nextMu  sync.Mutex
	next    *nextAssertions
	used    atomic.Int64 // unix nanos of the last request
	powerUp atomic.Int64 // unix nanos of the last power-up (start or re-plug)
	pin     pinState
	mgmt    credMgmtState
	blobs   largeBlobWrite
}

// New returns an Authenticator.
func New(cfg Config) *Authenticator {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PresenceTimeout <= 0 {
		cfg.PresenceTimeout = 30 * time.Second
	}
	if cfg.ApprovalLifetime <= 0 {
		cfg.ApprovalLifetime = 10 * time.Second
	}
	if cfg.PromptGrace <= 0 {
		cfg.PromptGrace = 250 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Authenticator{
		keys:   cfg.Keys,
		log:    cfg.Logger,
		cfg:    cfg,
		cancel: cancel,
		gate:   newPresenceGate(ctx, cfg.Presence, cfg.PresenceTimeout, cfg.ApprovalLifetime, cfg.Logger),
	}
	a.powerUp.Store(cfg.Now().UnixNano())
	return a
}

// LastUsed is when the last request arrived (zero before any).
func (a *Authenticator) LastUsed() time.Time {
	if n := a.used.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Handle implements ctaphid.Handler.
func (a *Authenticator) Handle(ctx context.Context, req ctaphid.Request) []byte {
	a.used.Store(time.Now().UnixNano())
	switch req.Command {
	case ctaphid.CmdMsg:
		return a.HandleAPDU(ctx, req.Payload)
	case ctaphid.CmdCBOR:
		return a.HandleCBOR(ctx, req.Payload, req.SetStatus)
	}
	// The CTAPHID server only hands up commands we advertise.
	a.log.Error("token: unexpected CTAPHID command", "cmd", req.Command)
	return nil
}

// Lock makes the token refuse, without prompting, every request that
// needs user presence and every one that signs without it (CTAP2 up=false
// assertions, U2F don't-enforce-presence), until Unlock: what a user does
// when stepping away (and what the tray does when the screen locks). The
// pinUvAuthToken and a pending getNextAssertion list end with it.
func (a *Authenticator) Lock() {
	if !a.locked.Swap(true) {
		a.gate.reset()
		a.clearNext()
		a.ResetPINToken()
		a.log.Info("token locked")
	}
}

// Unlock ends Lock.
func (a *Authenticator) Unlock() {
	if a.locked.Swap(false) {
		a.log.Info("token unlocked")
	}
}

// Locked reports whether the token is locked.
func (a *Authenticator) Locked() bool { return a.locked.Load() }

// PowerCycle drops everything volatile, as unplugging a key would:
// pending prompts and unused approvals, the pinUvAuthToken, the key
// agreement key and the consecutive wrong-PIN count, getNextAssertion and
// credential management state; and it opens the 10 s reset window.
func (a *Authenticator) PowerCycle() {
	a.gate.reset()
	a.clearNext()
	a.pin.powerCycle()
	a.mgmt.clear()
	a.blobs.clear()
	a.powerUp.Store(a.cfg.Now().UnixNano())
}

// ResetPINToken ends the pinUvAuthToken, as changePIN over CTAP does:
// for a PIN changed another way (the command line).
func (a *Authenticator) ResetPINToken() {
	a.pin.mu.Lock()
	defer a.pin.mu.Unlock()
	a.pin.resetToken()
	a.pin.resetPersistent()
}

// Close stops pending prompts.
func (a *Authenticator) Close() {
	a.cancel()
	a.gate.reset()
}
