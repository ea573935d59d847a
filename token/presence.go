package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
)

// presenceGate turns a blocking prompt into the polling that U2F clients
// do: a request that needs presence starts one prompt and is answered
// "presence required" (0x6985) until the user answers; the client re-sends
// the same request, and once approved the next identical request goes
// through. Each approval is used once and lapses after a short time. One
// prompt at a time: other requests meanwhile get 0x6985 without stacking a
// second prompt.
type presenceGate struct {
	ctx      context.Context
	prompter presence.Prompter
	timeout  time.Duration
	lifetime time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	current *prompt
}

type prompt struct {
	key    [32]byte
	cancel context.CancelFunc
	done   chan struct{}
	err    error     // set before done is closed
	until  time.Time // an answer (either way) is kept until then
}

func newPresenceGate(ctx context.Context, p presence.Prompter, timeout, lifetime time.Duration, log *slog.Logger) *presenceGate {
	return &presenceGate{ctx: ctx, prompter: p, timeout: timeout, lifetime: lifetime, log: log, now: time.Now}
}

// automatic reports whether p approves without asking anyone
// (presence.Always, --presence=always): the gate and the CTAP2 wait then
// have nothing to wait for, and a request should not pay for them.
func automatic(p presence.Prompter) bool {
	_, ok := p.(presence.Always)
	return ok
}

// errPresenceRequired is the U2F "not yet": the client should poll again.
var errPresenceRequired = errors.New("user presence required")

// errLocked refuses presence while the token is locked. Over U2F it is
// 0x6985 like any presence not given: the client waits as for an
// untouched key, and nobody is prompted.
var errLocked = errors.New("token is locked")

// requestKey identifies a request for the gate: a re-poll carries the
// same bytes, another request does not.
func requestKey(parts ...[]byte) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
		h.Write(n[:])
		h.Write(p)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// wouldPrompt reports whether check would start a new prompt for key: no
// prompt is running or answered for it, and none for another request is
// pending. The caller then makes sure the request can succeed first.
func (g *presenceGate) wouldPrompt(key [32]byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.current
	if p == nil {
		return true
	}
	select {
	case <-p.done:
		return p.key != key && g.now().After(p.until)
	default:
		return false
	}
}

// check returns nil when the request identified by key may proceed (and
// uses up its approval), errPresenceRequired while a prompt for it is
// pending or after a denial, and starts a prompt when none is running. It
// waits up to grace for the answer so that a quick answer needs no poll.
func (g *presenceGate) check(key [32]byte, req presence.Request, grace time.Duration) error {
	if automatic(g.prompter) {
		// Approved at once: no prompt goroutine, timer or approval to
		// hand over (issue 17).
		if err := g.prompter.Confirm(g.ctx, req); err != nil {
			return errPresenceRequired
		}
		return nil
	}
	g.mu.Lock()
	p := g.current
	if p != nil && p.key != key {
		select {
		case <-p.done:
			if g.now().After(p.until) {
				g.current, p = nil, nil // a finished, lapsed answer
			}
		default:
		}
		if p != nil && p.key != key {
			g.mu.Unlock()
			return errPresenceRequired // another request is being asked about
		}
	}
	if p == nil {
		p = g.start(key, req)
	}
	g.mu.Unlock()

	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		return errPresenceRequired
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.current != p {
		return errPresenceRequired // used or reset meanwhile
	}
	if p.err != nil {
		if g.now().After(p.until) {
			g.current = nil // a denial holds for a while, then the user may be asked again
		}
		return errPresenceRequired
	}
	g.current = nil // an approval is used once
	if g.now().After(p.until) {
		return errPresenceRequired
	}
	return nil
}

// start runs a prompt; g.mu is held.
func (g *presenceGate) start(key [32]byte, req presence.Request) *prompt {
	ctx, cancel := context.WithTimeout(g.ctx, g.timeout)
	p := &prompt{key: key, cancel: cancel, done: make(chan struct{})}
	g.current = p
	go func() {
		defer cancel()
		err := g.prompter.Confirm(ctx, req)
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = presence.ErrTimeout
		}
		g.mu.Lock()
		p.err = err
		p.until = g.now().Add(g.lifetime)
		g.mu.Unlock()
		if err != nil {
			g.log.Info("user presence not given", "operation", req.Operation, "rp", req.RelyingParty, "reason", err)
		}
		close(p.done)
	}()
	return p
}

func (g *presenceGate) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.current != nil {
		g.current.cancel()
		g.current = nil
	}
}
