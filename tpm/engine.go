package tpm

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Options tune an Engine. The zero value is usable.
type Options struct {
	Logger *slog.Logger
	// Sessions is the number of salted HMAC sessions kept warm. Default 1:
	// the engine runs one operation at a time, and on a bare TPM every
	// session we keep loaded is a slot another program cannot use.
	Sessions int
	// RetryBudget bounds how long one command is retried on TPM warnings
	// (RETRY, YIELDED, TESTING, NV_RATE) and waited out on resource
	// exhaustion (SESSION_MEMORY, OBJECT_MEMORY, ...). Default 10 s.
	RetryBudget time.Duration
	// CounterBlock is how many signature counter values one NV increment
	// reserves (see counter.go). Default 1024.
	CounterBlock uint32
	// FlushStale flushes every transient object and session already on
	// the TPM when the engine starts. Only for a bare TPM (no resource
	// manager) that tpm-u2f has to itself: there, nothing else reclaims
	// what a crashed daemon left loaded, and three leftovers fill the TPM.
	FlushStale bool
	// Persist saves the identity when an operation changes it (PIN
	// indexes), before the TPM change it records. Nil: not saved.
	Persist func(Identity) error
}

// Engine runs tpm-u2f's TPM operations on one connection. It is safe for
// concurrent use; operations are serialised.
type Engine struct {
	t   transport.TPM
	log *slog.Logger
	opt Options
	id  Identity

	mu      sync.Mutex // one operation in flight per connection
	closed  bool
	srk     tpm2.NamedHandle
	srkPub  tpm2.TPMTPublic
	pool    *sessionPool
	counter counterState
	// idKey authenticates credential IDs (credentialid.go); replaced
	// whole when the identity changes.
	idKey atomic.Pointer[[32]byte]
	// algorithms this TPM can make credentials with (probeAlgorithms),
	// fixed at New.
	algorithms []Algorithm
	// settingsCache is the configuration last read or written (config.go).
	settingsCache *settingsCache
}

// New opens an engine over t for the installation id. It creates the
// storage primary (once per process; never per request) and checks its
// Name against the one recorded, reads the reset epoch (epoch.go) and
// loads the storage key, warms the session pool and, on first use of id,
// defines the epoch and signature counter NV indexes. A reset that a crash
// interrupted is finished or rolled back here. It returns the identity to
// persist, which differs from id only when New had to provision, migrate
// or finish something.
func New(t transport.TPM, id Identity, opt Options) (*Engine, Identity, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Sessions <= 0 {
		opt.Sessions = 1
	}
	if opt.RetryBudget <= 0 {
		opt.RetryBudget = 10 * time.Second
	}
	if opt.CounterBlock == 0 {
		opt.CounterBlock = 1024
	}
	if err := id.valid(); err != nil {
		return nil, id, err
	}
	e := &Engine{t: t, log: opt.Logger, opt: opt, id: id}
	e.mu.Lock()
	defer e.mu.Unlock()
	if opt.FlushStale {
		e.flushStale()
	}
	if err := e.probeAlgorithms(); err != nil {
		return nil, id, err
	}
	if err := e.startIdentity(); err != nil {
		e.closeLocked()
		return nil, id, err
	}
	e.pool = newSessionPool(t, e.srk.Handle, e.srkPub, opt.Sessions)
	if err := e.provisionCounter(); err != nil {
		e.closeLocked()
		return nil, id, err
	}
	if err := e.cleanPINIndexes(); err != nil {
		e.closeLocked()
		return nil, id, err
	}
	if err := e.provisionHMACKey(); err != nil {
		e.closeLocked()
		return nil, id, err
	}
	if err := e.pool.warm(); err != nil {
		e.closeLocked()
		return nil, id, &CommandError{"StartAuthSession", err}
	}
	if err := e.afterIdentityChange(); err != nil {
		e.closeLocked()
		return nil, id, err
	}
	if _, err := e.settings(); err != nil {
		e.closeLocked()
		return nil, id, err
	}
	return e, e.id, nil
}

// Identity returns the installation identity in use.
func (e *Engine) Identity() Identity {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.id
}

// recover rebuilds what a TPM restart takes away: the storage primary and
// the sessions salted with it. Called with e.mu held.
func (e *Engine) recover(startupFirst bool) error {
	e.log.Warn("tpm state lost; re-creating the storage primary and sessions", "startup", startupFirst)
	if startupFirst {
		if err := startup(e.t); err != nil {
			return err
		}
	}
	e.pool.forget()
	p, pub, err := e.identityPrimary()
	if err != nil {
		return err
	}
	if err := e.attach(p, pub); err != nil {
		return err
	}
	e.pool.rebind(e.srk.Handle, e.srkPub)
	e.counter = counterState{}
	return nil
}

// op runs one whole operation under the engine lock. When a command in it
// finds the TPM restarted (or our primary gone) the state is rebuilt and
// the operation is run once more from the start. So it is when the
// connection to the TPM failed (swtpm restarted under us): the transport
// reconnects, the engine checks whether its primary survived, rebuilds if
// not, and runs the operation again.
func (e *Engine) op(f func() error) error { return e.run(f, true) }

// opOnce is op for operations that must not run twice when it is unknown
// whether the first run reached the TPM: a PIN check (a second wrong
// guess would be counted twice) or a PIN index change. After a failed
// connection the state is still checked and rebuilt, for the next one.
func (e *Engine) opOnce(f func() error) error { return e.run(f, false) }

func (e *Engine) run(f func() error, rerunOnTransport bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.id.Pending != nil {
		// A reset failed after its pending record was saved: settle it
		// before anything uses a key.
		if _, err := e.resumeReset(); err != nil {
			return err
		}
	}
	err := f()
	var ce *CommandError
	if err == nil || !errors.As(err, &ce) {
		return err
	}
	switch classify(ce.Err) {
	case faultHandle, faultStartup:
		if rerr := e.recover(classify(ce.Err) == faultStartup); rerr != nil {
			return fmt.Errorf("%w (recovery failed: %v)", err, rerr)
		}
		return f()
	case faultTransport:
		if rerr := e.reconnect(); rerr != nil {
			return fmt.Errorf("%w (reconnecting failed: %v)", err, rerr)
		}
		if rerunOnTransport {
			return f()
		}
	}
	return err
}

// reconnect runs after the connection to the TPM failed: the transport
// dials again on the next command. If the TPM kept our storage primary
// (only the connection dropped) nothing else is needed; if it restarted,
// everything loaded is gone and is rebuilt. Called with e.mu held.
func (e *Engine) reconnect() error {
	rsp, err := tpm2.ReadPublic{ObjectHandle: e.srk.Handle}.Execute(e.t)
	if err != nil && classify(err) == faultTransport {
		return err // still down
	}
	if err == nil && bytes.Equal(rsp.Name.Buffer, e.srk.Name.Buffer) {
		if !e.opt.FlushStale {
			// A resource manager flushed what the lost command loaded
			// when our connection closed.
			e.log.Warn("tpm connection failed and came back; the TPM kept its state")
			return nil
		}
		// A bare TPM kept whatever the lost command loaded (a key, a
		// session), under a handle we never learned: on a TPM that is
		// ours alone, flush everything and rebuild, or three such losses
		// fill its object slots.
		e.flushStale()
	}
	return e.recover(true)
}

// do runs one TPM command, retrying warnings with bounded backoff. It does
// not retry session faults: withSession does.
func (e *Engine) do(name string, f func() error) error {
	deadline := time.Now().Add(e.opt.RetryBudget)
	backoff := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		switch classify(err) {
		case faultRetry, faultWait:
			if time.Now().Add(backoff).Before(deadline) {
				e.log.Debug("tpm busy; retrying", "command", name, "rc", err)
				time.Sleep(backoff)
				backoff = min(2*backoff, 500*time.Millisecond)
				continue
			}
		}
		return &CommandError{name, err}
	}
}

// withSession runs one TPM command with a pooled session. A session that
// saw any error is flushed and never reused (seed 002). When the error says
// the session itself was lost or out of step (seed 000) the command runs
// again on a fresh session — never reported as an authorization failure.
// Against a neighbour that keeps flushing sessions this repeats, within the
// retry budget and maxSessionRetries.
func (e *Engine) withSession(name string, f func(tpm2.Session) error) error {
	deadline := time.Now().Add(e.opt.RetryBudget)
	for attempt := 0; ; attempt++ {
		var s tpm2.Session
		err := e.do("StartAuthSession", func() (err error) {
			s, err = e.pool.get()
			return err
		})
		if err != nil {
			return err
		}
		err = e.do(name, func() error { return f(s) })
		if err == nil {
			e.pool.put(s)
			return nil
		}
		e.pool.discard(s)
		var ce *CommandError
		if errors.As(err, &ce) && classify(ce.Err) == faultSession &&
			attempt < maxSessionRetries && time.Now().Before(deadline) {
			e.log.Warn("tpm session lost; retrying on a fresh session", "command", name, "rc", ce.Err, "attempt", attempt+1)
			if attempt > 0 {
				time.Sleep(time.Duration(min(attempt, 8)) * 5 * time.Millisecond)
			}
			continue
		}
		return err
	}
}

// maxSessionRetries bounds how often one command is re-run on a fresh
// session when its session keeps disappearing (the retry budget bounds
// the time). 8 was too few against a neighbour flushing sessions every
// millisecond on a loaded machine (TestNoisyNeighbour under -race).
const maxSessionRetries = 32

// flush releases a transient handle. Failure is logged, not returned: the
// operation's result stands, and a handle we could not flush is reclaimed
// when a resource manager closes our connection or the TPM restarts.
func (e *Engine) flush(h tpm2.TPMHandle) {
	err := e.do("FlushContext", func() error {
		_, err := tpm2.FlushContext{FlushHandle: h}.Execute(e.t)
		return err
	})
	if err != nil {
		e.log.Error("tpm flush failed", "handle", fmt.Sprintf("0x%08x", uint32(h)), "err", err)
	}
}

// Close flushes the sessions and the storage primary.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closeLocked()
}

func (e *Engine) closeLocked() error {
	if e.closed {
		return nil
	}
	e.closed = true
	if e.pool != nil {
		e.pool.close()
	}
	if e.srk.Handle != 0 {
		e.flush(e.srk.Handle)
	}
	return nil
}

// flushStale flushes the transient objects and sessions a crashed process
// left on a bare TPM.
func (e *Engine) flushStale() {
	n := 0
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		n += FlushAll(e.t, ht)
	}
	if n > 0 {
		e.log.Warn("tpm: flushed handles left on the bare TPM (a crashed daemon, or another program: a TPM without a resource manager cannot be shared)", "handles", n)
	}
}

func isSession(ht tpm2.TPMHT) bool {
	return ht == tpm2.TPMHTHMACSession || ht == tpm2.TPMHTPolicySession
}

// FlushAll flushes every loaded handle of one type (transient objects,
// HMAC sessions, ...) on t and returns how many it flushed.
func FlushAll(t transport.TPM, ht tpm2.TPMHT) int {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(ht) << 24, PropertyCount: 64}.Execute(t)
	if err != nil {
		return 0
	}
	handles, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		return 0
	}
	n := 0
	for _, h := range handles.Handle {
		// Sessions are listed by state (loaded 0x02, saved 0x03), each
		// with its own type in the handle: a loaded policy session is
		// 0x03xxxxxx in the loaded list (Part 2, TPM_HT). Skipping those
		// left a killed daemon's policy sessions loaded for good.
		if kind := uint32(h) >> 24; kind != uint32(ht) && !(isSession(ht) && isSession(tpm2.TPMHT(kind))) {
			continue
		}
		if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t); err == nil {
			n++
		}
	}
	return n
}

// afterIdentityChange runs once the identity in e.id is in use: at the
// end of New and after a reset. Whatever is derived from the identity's
// keys is derived again here: the credential ID tag key, from the
// hmac-secret key. Called with e.mu held.
func (e *Engine) afterIdentityChange() error {
	e.idKey.Store(nil)
	return e.deriveIDKey()
}
