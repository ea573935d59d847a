package presence

import (
	"context"
	"sync"
	"time"
)

// Manual is a prompter answered from inside the process, by a UI that
// shows Pending and calls Answer: the tray's Allow/Deny, the fallback
// when the notification server cannot show buttons. One question at a
// time; a second request waits for the first.
type Manual struct {
	timeout time.Duration
	slot    chan struct{}

	mu      sync.Mutex
	pending *Request
	answer  chan bool
}

// NewManual returns a Manual whose questions lapse after timeout
// (default 30 s).
func NewManual(timeout time.Duration) *Manual {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Manual{timeout: timeout, slot: make(chan struct{}, 1)}
}

// Confirm implements Prompter.
func (m *Manual) Confirm(ctx context.Context, req Request) error {
	select {
	case m.slot <- struct{}{}:
		defer func() { <-m.slot }()
	case <-ctx.Done():
		return ctx.Err()
	}
	answer := make(chan bool, 1)
	m.mu.Lock()
	m.pending, m.answer = &req, answer
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.pending, m.answer = nil, nil
		m.mu.Unlock()
	}()
	t := time.NewTimer(m.timeout)
	defer t.Stop()
	select {
	case ok := <-answer:
		if ok {
			return nil
		}
		return ErrDenied
	case <-t.C:
		return ErrTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Pending returns the question waiting for an answer, if any.
func (m *Manual) Pending() (Request, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		return Request{}, false
	}
	return *m.pending, true
}

// Answer answers the pending question; without one it does nothing (a
// late click must not approve the next request).
func (m *Manual) Answer(allow bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.answer != nil {
		select {
		case m.answer <- allow:
		default:
		}
		m.answer = nil
	}
}
