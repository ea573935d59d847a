package ctaphid

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Capabilities advertised in the INIT response. Only CapWink, CapCBOR
	// and CapNMSG mean anything; a CBOR request without CapCBOR is
	// ErrInvalidCmd.
	Capabilities byte
	// MsgRefused, when set and true, makes CTAPHID_MSG ERR_INVALID_CMD,
	// as for a key without U2F (CapNMSG), without changing what INIT
	// says: the token's alwaysUv switches U2F off at run time (OpenSK
	// answers CTAPHID_MSG so while !allows_ctap1).
	MsgRefused func() bool
	// DeviceVersion is the major, minor and build number INIT reports.
	DeviceVersion [3]byte
	// MessageTimeout bounds the gap between packets of one message.
	// Default 500 ms.
	MessageTimeout time.Duration
	// KeepaliveInterval is the period of KEEPALIVE reports while a
	// request runs. Default 100 ms.
	KeepaliveInterval time.Duration
	// MaxChannels bounds the channel table; allocating beyond it reclaims
	// the least recently used channel. Default 128.
	MaxChannels int
	// OnWink is called for CTAPHID_WINK.
	OnWink func()
	Logger *slog.Logger
}

// Server serves CTAPHID on one Transport.
type Server struct {
	t   Transport
	h   Handler
	opt Options
	log *slog.Logger

	// reading is when the report the reader holds arrived (unix nanos),
	// while it waits for mu; 0 when it holds none.
	reading atomic.Int64

	// mu guards the fields below. The reader goroutine holds it while it
	// handles a report, a handler's goroutine while it sends its
	// response, Serve while it sends a KEEPALIVE or times a message out.
	mu       sync.Mutex
	channels map[uint32]time.Time // allocated channels, by last use
	nextCID  uint32
	assembly *message  // a message being reassembled: the open transaction
	asmPeer  any       // its return address
	asmLast  time.Time // when its last packet arrived
	running  *request  // a request with the handler: the open transaction
	lockCID  uint32
	lockEnd  time.Time
}

type request struct {
	cid    uint32
	cmd    byte
	peer   any
	cancel context.CancelFunc
	done   chan struct{} // closed once the handler returned and its response went
	// abandoned is set when INIT resynchronised the channel: the host no
	// longer waits for this answer.
	abandoned bool

	mu     sync.Mutex
	status byte
}

// NewServer returns a server for t and h.
func NewServer(t Transport, h Handler, opt Options) *Server {
	if opt.MessageTimeout <= 0 {
		opt.MessageTimeout = 500 * time.Millisecond
	}
	if opt.KeepaliveInterval <= 0 {
		opt.KeepaliveInterval = 100 * time.Millisecond
	}
	if opt.MaxChannels <= 0 {
		opt.MaxChannels = 128
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	var b [4]byte
	rand.Read(b[:])
	return &Server{t: t, h: h, opt: opt, log: opt.Logger, channels: make(map[uint32]time.Time), nextCID: binary.BigEndian.Uint32(b[:])}
}

// Serve answers reports until ctx is done or the transport fails. It owns
// the transport from then on and closes it before returning, and it waits
// for a running handler (whose context it cancels), so no goroutine of
// its outlives it. It returns nil when ctx ended or the transport was
// closed.
func (s *Server) Serve(ctx context.Context) error {
	// The reader goroutine handles each report itself, under mu, rather
	// than handing it to this loop: a hand-off per report, and another per
	// response, were most of the time the daemon added to a request
	// outside the TPM on a busy machine (issue 17, bench/e2e).
	readerDone := make(chan struct{})
	var result error // set by the reader before readerDone closes
	go func() {
		defer close(readerDone)
		for {
			r, err := s.t.ReadReport()
			if err != nil {
				if !errors.Is(err, errClosed) && ctx.Err() == nil {
					result = err
				}
				return
			}
			at := time.Now()
			s.reading.Store(at.UnixNano())
			s.mu.Lock()
			s.reading.Store(0)
			if ctx.Err() == nil {
				s.handleReport(ctx, r, at)
			}
			s.mu.Unlock()
		}
	}()
	keepalive := time.NewTicker(s.opt.KeepaliveInterval)
	defer keepalive.Stop()
	timeout := time.NewTicker(s.opt.MessageTimeout / 4)
	defer timeout.Stop()

loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-readerDone:
			break loop
		case <-keepalive.C:
			s.mu.Lock()
			if r := s.running; r != nil {
				r.mu.Lock()
				st := r.status
				r.mu.Unlock()
				s.send(r.cid, CmdKeepalive, []byte{st}, r.peer)
			}
			s.mu.Unlock()
		case <-timeout.C:
			s.mu.Lock()
			// A report that arrived in time but waits for mu must not lose
			// the race against the tick: the next tick decides.
			if s.assembly != nil && s.reading.Load() == 0 && time.Since(s.asmLast) > s.opt.MessageTimeout {
				s.log.Info("ctaphid: message timeout", "cid", s.assembly.cid, "have", len(s.assembly.payload), "want", s.assembly.want)
				s.sendError(s.assembly.cid, ErrMsgTimeout, s.asmPeer)
				s.assembly = nil
			}
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	r := s.running
	s.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
	s.t.Close()
	<-readerDone
	return result
}

func (s *Server) handleReport(ctx context.Context, r Report, at time.Time) {
	p := decodePacket(&r.Data)
	if p.cid == 0 {
		s.log.Debug("ctaphid: report on CID 0")
		s.sendError(p.cid, ErrInvalidChannel, r.Peer)
		return
	}
	if !p.init {
		s.continuation(ctx, p, r.Peer, at)
		return
	}
	if p.cmd == CmdInit {
		s.init(p, r.Peer)
		return
	}
	if p.cid == BroadcastCID {
		s.log.Debug("ctaphid: non-INIT command on the broadcast channel", "cmd", p.cmd)
		s.sendError(p.cid, ErrInvalidChannel, r.Peer)
		return
	}
	if p.cmd == CmdCancel {
		if s.running != nil && s.running.cid == p.cid {
			s.log.Debug("ctaphid: cancel", "cid", p.cid)
			s.running.cancel()
		}
		return // CANCEL has no response of its own
	}
	if p.bcnt > MaxMessageSize {
		s.log.Info("ctaphid: declared length too large", "cid", p.cid, "bcnt", p.bcnt)
		s.sendError(p.cid, ErrInvalidLen, r.Peer)
		return
	}
	if s.lockedOut(p.cid) {
		s.sendError(p.cid, ErrChannelBusy, r.Peer)
		return
	}
	if busy := s.busyCID(); busy != 0 {
		switch {
		case busy == p.cid && s.assembly != nil:
			// An init packet in the middle of a message on the same channel.
			s.log.Info("ctaphid: init packet while a message was being received", "cid", p.cid)
			s.assembly = nil
			s.sendError(p.cid, ErrInvalidSeq, r.Peer)
		case busy != p.cid && p.cmd == CmdPing && p.bcnt <= initDataSize:
			// Stateless and short: answered even while another channel
			// waits for the user, so hosts can tell the key is alive.
			s.touch(p.cid)
			s.send(p.cid, CmdPing, p.data[:p.bcnt], r.Peer)
		default:
			s.sendError(p.cid, ErrChannelBusy, r.Peer)
		}
		return
	}
	// Lenient like shipping keys: a CID we never allocated (a client that
	// kept its channel across a re-plug) is served as if we had.
	s.touch(p.cid)
	m := start(p)
	if !m.complete() {
		s.assembly, s.asmPeer, s.asmLast = m, r.Peer, at
		return
	}
	s.dispatch(ctx, m, r.Peer)
}

func (s *Server) continuation(ctx context.Context, p packet, peer any, at time.Time) {
	if p.cid == BroadcastCID {
		s.sendError(p.cid, ErrInvalidChannel, peer)
		return
	}
	m := s.assembly
	if m == nil || m.cid != p.cid {
		// Spurious continuation packets are ignored (section 11.2.4).
		s.log.Debug("ctaphid: continuation packet without a message", "cid", p.cid)
		return
	}
	if err := m.add(p); err != nil {
		s.log.Info("ctaphid: bad sequence number", "cid", p.cid, "seq", p.seq, "want", m.nextSeq)
		s.assembly = nil
		s.sendError(p.cid, ErrInvalidSeq, peer)
		return
	}
	s.asmLast = at
	if m.complete() {
		s.assembly = nil
		s.dispatch(ctx, m, peer)
	}
}

func (s *Server) busyCID() uint32 {
	switch {
	case s.running != nil:
		return s.running.cid
	case s.assembly != nil:
		return s.assembly.cid
	}
	return 0
}

func (s *Server) lockedOut(cid uint32) bool {
	return s.lockCID != 0 && s.lockCID != cid && time.Now().Before(s.lockEnd)
}

// init answers CTAPHID_INIT (section 11.2.9.1.3): on the broadcast channel
// it allocates a channel; on an allocated one it resynchronises it,
// abandoning whatever it was doing.
func (s *Server) init(p packet, peer any) {
	if p.bcnt != 8 {
		s.log.Info("ctaphid: INIT with a bad length", "cid", p.cid, "bcnt", p.bcnt)
		s.sendError(p.cid, ErrInvalidLen, peer)
		return
	}
	if p.cid != BroadcastCID && s.lockedOut(p.cid) {
		s.sendError(p.cid, ErrChannelBusy, peer)
		return
	}
	cid := p.cid
	if cid == BroadcastCID {
		cid = s.allocate()
	} else {
		if s.assembly != nil && s.assembly.cid == cid {
			s.assembly = nil
		}
		if s.running != nil && s.running.cid == cid {
			s.running.cancel()
			s.running.abandoned = true
		}
		s.touch(cid)
	}
	rsp := make([]byte, 17)
	copy(rsp[0:8], p.data[:8])
	binary.BigEndian.PutUint32(rsp[8:12], cid)
	rsp[12] = 2 // CTAPHID protocol version
	copy(rsp[13:16], s.opt.DeviceVersion[:])
	rsp[16] = s.opt.Capabilities
	s.send(p.cid, CmdInit, rsp, peer)
}

func (s *Server) allocate() uint32 {
	for {
		s.nextCID++
		cid := s.nextCID
		if cid == 0 || cid == BroadcastCID {
			continue
		}
		if _, used := s.channels[cid]; used {
			continue
		}
		s.touch(cid)
		return cid
	}
}

// touch marks a channel used, reclaiming the least recently used one when
// the table is full: thousands of INITs cost a bounded table.
func (s *Server) touch(cid uint32) {
	if _, ok := s.channels[cid]; !ok && len(s.channels) >= s.opt.MaxChannels {
		var oldest uint32
		var t time.Time
		for c, used := range s.channels {
			if c == s.busyCID() || c == s.lockCID {
				continue
			}
			if oldest == 0 || used.Before(t) {
				oldest, t = c, used
			}
		}
		delete(s.channels, oldest)
	}
	s.channels[cid] = time.Now()
}

func (s *Server) dispatch(ctx context.Context, m *message, peer any) {
	switch m.cmd {
	case CmdPing:
		s.send(m.cid, CmdPing, m.payload, peer)
	case CmdWink:
		s.log.Info("ctaphid: wink", "cid", m.cid)
		if s.opt.OnWink != nil {
			s.opt.OnWink()
		}
		s.send(m.cid, CmdWink, nil, peer)
	case CmdLock:
		if len(m.payload) != 1 {
			s.sendError(m.cid, ErrInvalidLen, peer)
			return
		}
		secs := m.payload[0]
		if secs > 10 {
			s.sendError(m.cid, ErrInvalidPar, peer)
			return
		}
		if secs == 0 {
			s.lockCID = 0
		} else {
			s.lockCID, s.lockEnd = m.cid, time.Now().Add(time.Duration(secs)*time.Second)
		}
		s.send(m.cid, CmdLock, nil, peer)
	case CmdMsg:
		if s.opt.Capabilities&CapNMSG != 0 || s.opt.MsgRefused != nil && s.opt.MsgRefused() {
			s.sendError(m.cid, ErrInvalidCmd, peer)
			return
		}
		s.run(ctx, m, peer)
	case CmdCBOR:
		if s.opt.Capabilities&CapCBOR == 0 {
			s.sendError(m.cid, ErrInvalidCmd, peer)
			return
		}
		if len(m.payload) == 0 {
			// CTAPHID_CBOR's BCNT is at least 1, the CTAP command byte
			// (CTAP 2.1 section 11.2.9.1.2): an empty one is a framing
			// error, answered at this layer, not a CTAP status.
			s.log.Info("ctaphid: CBOR message without a command byte", "cid", m.cid)
			s.sendError(m.cid, ErrInvalidLen, peer)
			return
		}
		s.run(ctx, m, peer)
	default:
		s.log.Info("ctaphid: unknown command", "cid", m.cid, "cmd", m.cmd)
		s.sendError(m.cid, ErrInvalidCmd, peer)
	}
}

// run hands a message to the handler on its own goroutine: the read loop
// goes on answering INIT, PING and busy errors while the user is asked.
func (s *Server) run(ctx context.Context, m *message, peer any) {
	hctx, cancel := context.WithCancel(ctx)
	req := &request{cid: m.cid, cmd: m.cmd, peer: peer, cancel: cancel, done: make(chan struct{}), status: StatusProcessing}
	s.running = req
	setStatus := func(st byte) {
		req.mu.Lock()
		changed := req.status != st
		req.status = st
		req.mu.Unlock()
		// Sent at once when the status changes, from the handler's
		// goroutine: writes of whole reports are atomic on every transport
		// we have. An unchanged status waits for the periodic KEEPALIVE:
		// a report per request that tells the client nothing new costs a
		// write here and a read there (issue 17).
		if changed && hctx.Err() == nil {
			s.send(req.cid, CmdKeepalive, []byte{st}, req.peer)
		}
	}
	payload := m.payload
	go func() {
		defer cancel()
		rsp := s.h.Handle(hctx, Request{Channel: m.cid, Command: m.cmd, Payload: payload, SetStatus: setStatus})
		// Answered from here, and the transaction ended in the same
		// critical section, so the client's next request never finds
		// the channel busy.
		s.mu.Lock()
		if s.running == req {
			s.running = nil
			if !req.abandoned {
				s.send(req.cid, req.cmd, rsp, req.peer)
			}
		}
		s.mu.Unlock()
		close(req.done)
	}()
}

func (s *Server) sendError(cid uint32, e Error, peer any) {
	s.send(cid, CmdError, []byte{byte(e)}, peer)
}

func (s *Server) send(cid uint32, cmd byte, payload []byte, peer any) {
	pkts, err := Fragment(cid, cmd, payload)
	if err != nil {
		s.log.Error("ctaphid: response too large", "cid", cid, "bytes", len(payload))
		pkts, _ = Fragment(cid, CmdError, []byte{byte(ErrOther)})
	}
	for _, p := range pkts {
		if err := s.t.WriteReport(Report{Data: p, Peer: peer}); err != nil {
			s.log.Debug("ctaphid: write failed", "cid", cid, "err", err)
			return
		}
	}
}
