package ctaphid

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Client is the host side of CTAPHID over one Transport: what a browser or
// libfido2 does, for tests and the demo. One call at a time.
type Client struct {
	t Transport
	// OnKeepalive, if set, sees the status of every KEEPALIVE received.
	OnKeepalive func(status byte)

	cid  uint32
	caps byte

	once    sync.Once
	reports chan Report
	readErr error
	mu      sync.Mutex // one Call at a time
}

// NewClient returns a client on t. Call Init before anything else.
func NewClient(t Transport) *Client { return &Client{t: t} }

// Channel is the channel INIT allocated.
func (c *Client) Channel() uint32 { return c.cid }

// Capabilities are the flags the device reported in INIT.
func (c *Client) Capabilities() byte { return c.caps }

func (c *Client) startReader() {
	c.once.Do(func() {
		c.reports = make(chan Report, 64)
		go func() {
			defer close(c.reports)
			for {
				r, err := c.t.ReadReport()
				if err != nil {
					c.readErr = err
					return
				}
				c.reports <- r
			}
		}()
	})
}

// Init allocates a channel with CTAPHID_INIT on the broadcast channel.
func (c *Client) Init(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var nonce [8]byte
	rand.Read(nonce[:])
	c.cid = BroadcastCID
	rsp, err := c.call(ctx, CmdInit, nonce[:], func(p []byte) bool { return len(p) >= 8 && [8]byte(p[:8]) == nonce })
	if err != nil {
		return fmt.Errorf("ctaphid: init: %w", err)
	}
	if len(rsp) < 17 {
		return fmt.Errorf("ctaphid: init: short response (%d bytes)", len(rsp))
	}
	c.cid = binary.BigEndian.Uint32(rsp[8:12])
	c.caps = rsp[16]
	return nil
}

// Call sends one request and returns the response payload. KEEPALIVEs are
// skipped; a CTAPHID_ERROR reply is returned as an error wrapping Error.
// When ctx ends first, Call sends CTAPHID_CANCEL and waits a short while
// for the device's answer.
func (c *Client) Call(ctx context.Context, cmd byte, payload []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.call(ctx, cmd, payload, nil)
}

func (c *Client) call(ctx context.Context, cmd byte, payload []byte, accept func([]byte) bool) ([]byte, error) {
	c.startReader()
	pkts, err := Fragment(c.cid, cmd, payload)
	if err != nil {
		return nil, err
	}
	for _, p := range pkts {
		if err := c.t.WriteReport(Report{Data: p}); err != nil {
			return nil, err
		}
	}
	var m *message
	cancelled := false
	done := ctx.Done()
	for {
		var r Report
		var ok bool
		select {
		case r, ok = <-c.reports:
			if !ok {
				return nil, fmt.Errorf("ctaphid: transport: %w", c.readErr)
			}
		case <-done:
			if cancelled {
				return nil, ctx.Err()
			}
			cancelled = true
			if cancelPkt, err := Fragment(c.cid, CmdCancel, nil); err == nil {
				c.t.WriteReport(Report{Data: cancelPkt[0]})
			}
			return nil, ctx.Err()
		}
		p := decodePacket(&r.Data)
		if p.cid != c.cid {
			continue
		}
		if p.init {
			switch {
			case p.cmd == CmdKeepalive:
				if c.OnKeepalive != nil && len(p.data) > 0 {
					c.OnKeepalive(p.data[0])
				}
				continue
			case p.cmd == CmdError:
				return nil, Error(p.data[0])
			case p.cmd != cmd:
				return nil, fmt.Errorf("ctaphid: reply command 0x%02x to request 0x%02x", p.cmd, cmd)
			case p.bcnt > MaxMessageSize:
				return nil, ErrInvalidLen
			}
			m = start(p)
		} else if m != nil {
			if err := m.add(p); err != nil {
				return nil, err
			}
		} else {
			continue
		}
		if m.complete() {
			if accept != nil && !accept(m.payload) {
				m = nil
				continue
			}
			return m.payload, nil
		}
	}
}

// ErrorCode returns the CTAPHID error in err, if there is one.
func ErrorCode(err error) (Error, bool) {
	var e Error
	ok := errors.As(err, &e)
	return e, ok
}
