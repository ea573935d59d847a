package tpmtest

import (
	"testing"

	"encoding/binary"
	"fmt"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"sync"
	"syscall"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Injection is what a Fault does to the command it hits.
type Injection int

const (
	// InjectRC answers the command with Fault.RC without sending it.
	InjectRC Injection = iota
	// InjectLoseSessions flushes every loaded HMAC/policy session behind
	// the caller's back, then sends the command: what a resource manager
	// under session exhaustion does (seed 000).
	InjectLoseSessions
	// InjectClosed fails the command with a transport error, as a TPM
	// connection that went away does.
	InjectClosed
	// InjectLoseResponse sends the command, then fails it with the
	// transport error: the TPM did the work (a key may be loaded) and the
	// caller never learns its result.
	InjectLoseResponse
)

// Fault hits the Occurrence-th sending (1-based, counted from when the
// fault is added) of Command, and the Repeat-1 sendings after it.
// Occurrence 0 hits every sending. Command AnyCommand counts every
// command: Occurrence n is the n-th command sent, whatever it is.
type Fault struct {
	Command    tpm2.TPMCC
	Occurrence int
	Repeat     int
	Inject     Injection
	RC         tpm2.TPMRC

	hits int
	base int // sendings of Command before the fault was added
}

// AnyCommand makes a Fault count every command (see Fault).
const AnyCommand tpm2.TPMCC = 0

// ErrInjectedClose is the transport error of InjectClosed: a connection
// reset, as a dropped socket to swtpm gives.
var ErrInjectedClose = fmt.Errorf("tpmtest: injected connection failure: %w", syscall.ECONNRESET)

// Faulty is a transport.TPM that injects faults by command code and
// occurrence. It is safe for concurrent use.
type Faulty struct {
	next transport.TPM

	mu     sync.Mutex
	faults []*Fault
	seen   map[tpm2.TPMCC]int
	total  int
	log    []tpm2.TPMCC
}

// NewFaulty wraps t.
func NewFaulty(t transport.TPM) *Faulty {
	return &Faulty{next: t, seen: make(map[tpm2.TPMCC]int)}
}

// Add arms a fault.
func (f *Faulty) Add(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fault.Repeat <= 0 {
		fault.Repeat = 1
	}
	fault.base = f.seen[fault.Command]
	if fault.Command == AnyCommand {
		fault.base = f.total
	}
	f.faults = append(f.faults, &fault)
}

// Clear disarms every fault.
func (f *Faulty) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// Sent returns the commands sent since the last call, hit or not.
func (f *Faulty) Sent() []tpm2.TPMCC {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.log
	f.log = nil
	return out
}

// Hits returns how many commands the faults hit.
func (f *Faulty) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, x := range f.faults {
		n += x.hits
	}
	return n
}

// Send implements transport.TPM.
func (f *Faulty) Send(cmd []byte) ([]byte, error) {
	if len(cmd) < 10 {
		return f.next.Send(cmd)
	}
	cc := tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))
	f.mu.Lock()
	f.seen[cc]++
	f.total++
	f.log = append(f.log, cc)
	var hit *Fault
	for _, x := range f.faults {
		n := f.seen[cc]
		switch x.Command {
		case cc:
		case AnyCommand:
			n = f.total
		default:
			continue
		}
		if k := n - x.base; x.Occurrence == 0 || (k >= x.Occurrence && k < x.Occurrence+x.Repeat) {
			hit = x
			x.hits++
			break
		}
	}
	f.mu.Unlock()
	if hit == nil {
		return f.next.Send(cmd)
	}
	switch hit.Inject {
	case InjectRC:
		rsp := make([]byte, 10)
		binary.BigEndian.PutUint16(rsp[0:2], uint16(tpm2.TPMSTNoSessions))
		binary.BigEndian.PutUint32(rsp[2:6], 10)
		binary.BigEndian.PutUint32(rsp[6:10], uint32(hit.RC))
		return rsp, nil
	case InjectLoseSessions:
		FlushAll(f.next, tpm2.TPMHTHMACSession)
		FlushAll(f.next, tpm2.TPMHTPolicySession)
		return f.next.Send(cmd)
	case InjectClosed:
		return nil, ErrInjectedClose
	case InjectLoseResponse:
		f.next.Send(cmd)
		return nil, ErrInjectedClose
	}
	return f.next.Send(cmd)
}

// FlushAll flushes every loaded handle of one type on t (tpm.FlushAll).
func FlushAll(t transport.TPM, ht tpm2.TPMHT) int { return tpm.FlushAll(t, ht) }

// AssertNoLockout fails the test unless the TPM's dictionary-attack
// failure counter is 0.
func AssertNoLockout(tb testing.TB, t transport.TPM) {
	tb.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTLockoutCounter), PropertyCount: 1}.Execute(t)
	if err != nil {
		tb.Fatal(err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range props.TPMProperty {
		if p.Property == tpm2.TPMPTLockoutCounter && p.Value != 0 {
			tb.Errorf("TPM lockout counter = %d, want 0", p.Value)
		}
	}
}

// Locked serialises Send on a transport that is not safe for concurrent
// use (the simulator), so a test can play a second TPM user beside the
// token.
type Locked struct {
	mu   sync.Mutex
	Next transport.TPM
}

// Send implements transport.TPM.
func (l *Locked) Send(cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Next.Send(cmd)
}
