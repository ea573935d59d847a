package opstats

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// Recorder accounts requests by operation. Its wrappers (Handler, TPM,
// Replay, Prompter) attribute time to the request the CTAPHID server is
// running: CTAPHID serves one transaction at a time, so there is at most
// one. (TPM commands of a control-socket command that runs meanwhile, such
// as `tpm-u2f status` reading the PIN retries, count towards it too.)
// A nil *Recorder records nothing and its wrappers return what they are
// given, so the daemon wires it the same with and without --stats.
type Recorder struct {
	cur atomic.Pointer[span]

	mu  sync.Mutex
	ops map[string]*parts
}

// parts are the sketches of one operation.
type parts struct {
	total, tpm, replay, presence, rest Sketch
}

// New returns an empty Recorder.
func New() *Recorder { return &Recorder{ops: make(map[string]*parts)} }

type interval struct{ from, to time.Time }

func (a interval) overlap(b interval) time.Duration {
	from, to := a.from, a.to
	if b.from.After(from) {
		from = b.from
	}
	if b.to.Before(to) {
		to = b.to
	}
	return max(to.Sub(from), 0)
}

// span is one request being accounted.
type span struct {
	mu       sync.Mutex
	start    time.Time
	tpm      []interval
	replay   []interval
	presence time.Duration
	asking   time.Time // a presence prompt still running, since then
}

// maxIntervals bounds what a span keeps: a request with more TPM commands
// (a PIN change) still counts them all, with their overlap with the
// replay store (zero outside signatures) no longer computed.
const maxIntervals = 32

func (s *span) add(list *[]interval, from, to time.Time) {
	s.mu.Lock()
	if len(*list) < maxIntervals {
		*list = append(*list, interval{from, to})
	} else if list == &s.tpm {
		(*list)[maxIntervals-1].to = (*list)[maxIntervals-1].to.Add(to.Sub(from))
	}
	s.mu.Unlock()
}

// Handler wraps a CTAPHID handler: every U2F and CTAP2 message is a
// request to account.
func (r *Recorder) Handler(h ctaphid.Handler) ctaphid.Handler {
	if r == nil {
		return h
	}
	return handler{h, r}
}

type handler struct {
	h ctaphid.Handler
	r *Recorder
}

func (h handler) Handle(ctx context.Context, req ctaphid.Request) []byte {
	sp := &span{start: time.Now(), tpm: make([]interval, 0, 8)}
	h.r.cur.Store(sp)
	rsp := h.h.Handle(ctx, req)
	end := time.Now()
	h.r.cur.CompareAndSwap(sp, nil)
	h.r.finish(Operation(req.Command, req.Payload, rsp), sp, end)
	return rsp
}

// Operation names a request for the statistics: "u2f authenticate",
// "ctap2 getAssertion" and so on, with " (refused)" for requests answered
// with an error (a U2F status word other than 9000, a CTAP2 status other
// than OK), such as U2F's polls while the user has not touched the key.
func Operation(cmd byte, req, rsp []byte) string {
	var name string
	ok := false
	switch cmd {
	case ctaphid.CmdMsg:
		name = "u2f other"
		if len(req) >= 3 {
			switch {
			case req[1] == 0x01:
				name = "u2f register"
			case req[1] == 0x02 && req[2] == 0x07:
				name = "u2f check-only"
			case req[1] == 0x02:
				name = "u2f authenticate"
			}
		}
		ok = len(rsp) >= 2 && rsp[len(rsp)-2] == 0x90 && rsp[len(rsp)-1] == 0x00
	case ctaphid.CmdCBOR:
		name = "ctap2 other"
		if len(req) >= 1 {
			switch req[0] {
			case 0x01:
				name = "ctap2 makeCredential"
			case 0x02:
				name = "ctap2 getAssertion"
			case 0x04:
				name = "ctap2 getInfo"
			case 0x06:
				name = "ctap2 clientPIN"
			case 0x08:
				name = "ctap2 getNextAssertion"
			}
		}
		ok = len(rsp) >= 1 && rsp[0] == 0
	default:
		name = fmt.Sprintf("ctaphid 0x%02x", cmd)
	}
	if !ok {
		name += " (refused)"
	}
	return name
}

func (r *Recorder) finish(op string, sp *span, end time.Time) {
	sp.mu.Lock()
	total := end.Sub(sp.start)
	presence := sp.presence
	if !sp.asking.IsZero() {
		presence += end.Sub(sp.asking)
	}
	var tpm, replay, overlap time.Duration
	for _, t := range sp.tpm {
		tpm += t.to.Sub(t.from)
	}
	for _, rp := range sp.replay {
		replay += rp.to.Sub(rp.from)
		for _, t := range sp.tpm {
			overlap += t.overlap(rp)
		}
	}
	sp.mu.Unlock()
	// The replay store's record overlaps the signature: only what it adds
	// beyond the TPM's time is the request's.
	rest := max(total-tpm-presence-(replay-overlap), 0)

	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.ops[op]
	if p == nil {
		p = new(parts)
		r.ops[op] = p
	}
	p.total.Add(total)
	p.tpm.Add(tpm)
	p.replay.Add(replay)
	p.presence.Add(presence)
	p.rest.Add(rest)
}

// TPM wraps the TPM transport: the time of every command counts towards
// the current request.
func (r *Recorder) TPM(t transport.TPM) transport.TPM {
	if r == nil {
		return t
	}
	return tpmTransport{t, r}
}

type tpmTransport struct {
	t transport.TPM
	r *Recorder
}

func (t tpmTransport) Send(cmd []byte) ([]byte, error) {
	sp := t.r.cur.Load()
	if sp == nil {
		return t.t.Send(cmd)
	}
	from := time.Now()
	rsp, err := t.t.Send(cmd)
	sp.add(&sp.tpm, from, time.Now())
	return rsp, err
}

// Guard is the replay store as the token uses it (token.ReplayGuard).
type Guard interface {
	Check(key [32]byte) error
	Record(key [32]byte) error
}

// Replay wraps the replay store: Check and Record count towards the
// current request.
func (r *Recorder) Replay(g Guard) Guard {
	if r == nil {
		return g
	}
	return guard{g, r}
}

type guard struct {
	g Guard
	r *Recorder
}

func (g guard) timed(f func([32]byte) error, key [32]byte) error {
	sp := g.r.cur.Load()
	if sp == nil {
		return f(key)
	}
	from := time.Now()
	err := f(key)
	sp.add(&sp.replay, from, time.Now())
	return err
}

func (g guard) Check(key [32]byte) error  { return g.timed(g.g.Check, key) }
func (g guard) Record(key [32]byte) error { return g.timed(g.g.Record, key) }

// Prompter wraps the presence prompter: the time a request waits for the
// user counts as its presence wait (for U2F, whose prompt outlives the
// polls, only while the request that started it is running).
// presence.Always is returned as it is: the token approves it inline,
// and it waits for nobody.
func (r *Recorder) Prompter(p presence.Prompter) presence.Prompter {
	if _, auto := p.(presence.Always); r == nil || auto {
		return p
	}
	return prompter{p, r}
}

type prompter struct {
	p presence.Prompter
	r *Recorder
}

func (p prompter) Confirm(ctx context.Context, req presence.Request) error {
	sp := p.r.cur.Load()
	if sp == nil {
		return p.p.Confirm(ctx, req)
	}
	sp.mu.Lock()
	sp.asking = time.Now()
	sp.mu.Unlock()
	err := p.p.Confirm(ctx, req)
	sp.mu.Lock()
	if !sp.asking.IsZero() {
		sp.presence += time.Since(sp.asking)
		sp.asking = time.Time{}
	}
	sp.mu.Unlock()
	return err
}

// String is one line per operation: the count, then p50/p95/p99 of the
// whole request and of each part, in milliseconds.
func (r *Recorder) String() string {
	if r == nil {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.ops))
	for n := range r.ops {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		p := r.ops[n]
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: n=%d p50/p95/p99 ms: total %s, tpm %s, replay %s, presence %s, rest %s",
			n, p.total.Count(), pcts(&p.total), pcts(&p.tpm), pcts(&p.replay), pcts(&p.presence), pcts(&p.rest))
	}
	return b.String()
}

func pcts(s *Sketch) string {
	ms := func(q float64) string {
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", float64(s.Quantile(q))/1e6), "0"), ".")
	}
	return ms(.5) + "/" + ms(.95) + "/" + ms(.99)
}
