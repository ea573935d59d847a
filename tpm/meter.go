package tpm

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Meter is a transport.TPM that counts the commands passing through it by
// command code and adds up the time each took. The benchmarks, the demo and
// `tpm-u2f run --stats` read it. It is safe for concurrent use.
type Meter struct {
	next transport.TPM

	mu    sync.Mutex
	stats map[tpm2.TPMCC]*CommandStats
}

// CommandStats is what a Meter knows about one command code.
type CommandStats struct {
	Count  int
	Errors int // responses with a non-zero response code
	Total  time.Duration
}

// NewMeter wraps t.
func NewMeter(t transport.TPM) *Meter {
	return &Meter{next: t, stats: make(map[tpm2.TPMCC]*CommandStats)}
}

// Send implements transport.TPM.
func (m *Meter) Send(cmd []byte) ([]byte, error) {
	start := time.Now()
	rsp, err := m.next.Send(cmd)
	took := time.Since(start)
	if len(cmd) < 10 {
		return rsp, err
	}
	cc := tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))
	m.mu.Lock()
	s := m.stats[cc]
	if s == nil {
		s = new(CommandStats)
		m.stats[cc] = s
	}
	s.Count++
	s.Total += took
	if err != nil || len(rsp) < 10 || binary.BigEndian.Uint32(rsp[6:10]) != 0 {
		s.Errors++
	}
	m.mu.Unlock()
	return rsp, err
}

// Snapshot returns a copy of the counts so far.
func (m *Meter) Snapshot() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(Stats, len(m.stats))
	for cc, s := range m.stats {
		out[cc] = *s
	}
	return out
}

// Stats maps command codes to what was seen of them.
type Stats map[tpm2.TPMCC]CommandStats

// Sub returns the commands sent between an earlier snapshot and s.
func (s Stats) Sub(earlier Stats) Stats {
	out := make(Stats)
	for cc, v := range s {
		e := earlier[cc]
		d := CommandStats{Count: v.Count - e.Count, Errors: v.Errors - e.Errors, Total: v.Total - e.Total}
		if d.Count != 0 {
			out[cc] = d
		}
	}
	return out
}

// Total is the number of commands in s.
func (s Stats) Total() int {
	n := 0
	for _, v := range s {
		n += v.Count
	}
	return n
}

// String lists the commands as "Load×1 Sign×1 FlushContext×1", in command
// code order.
func (s Stats) String() string {
	ccs := make([]tpm2.TPMCC, 0, len(s))
	for cc := range s {
		ccs = append(ccs, cc)
	}
	sort.Slice(ccs, func(i, j int) bool { return ccs[i] < ccs[j] })
	parts := make([]string, 0, len(ccs))
	for _, cc := range ccs {
		parts = append(parts, fmt.Sprintf("%s×%d", CommandName(cc), s[cc].Count))
	}
	return strings.Join(parts, " ")
}

var commandNames = map[tpm2.TPMCC]string{
	tpm2.TPMCCStartup:          "Startup",
	tpm2.TPMCCCreatePrimary:    "CreatePrimary",
	tpm2.TPMCCCreate:           "Create",
	tpm2.TPMCCCreateLoaded:     "CreateLoaded",
	tpm2.TPMCCLoad:             "Load",
	tpm2.TPMCCSign:             "Sign",
	tpm2.TPMCCFlushContext:     "FlushContext",
	tpm2.TPMCCStartAuthSession: "StartAuthSession",
	tpm2.TPMCCContextSave:      "ContextSave",
	tpm2.TPMCCContextLoad:      "ContextLoad",
	tpm2.TPMCCGetCapability:    "GetCapability",
	tpm2.TPMCCNVDefineSpace:    "NV_DefineSpace",
	tpm2.TPMCCNVUndefineSpace:  "NV_UndefineSpace",
	tpm2.TPMCCNVIncrement:      "NV_Increment",
	tpm2.TPMCCNVRead:           "NV_Read",
	tpm2.TPMCCNVReadPublic:     "NV_ReadPublic",
	tpm2.TPMCCNVWrite:          "NV_Write",
	tpm2.TPMCCReadPublic:       "ReadPublic",
	tpm2.TPMCCGetRandom:        "GetRandom",
	tpm2.TPMCCHMAC:             "HMAC",
	tpm2.TPMCCEvictControl:     "EvictControl",
}

// CommandName names a command code the way TPM 2.0 Part 3 does, without
// the TPM2_ prefix.
func CommandName(cc tpm2.TPMCC) string {
	if n, ok := commandNames[cc]; ok {
		return n
	}
	return fmt.Sprintf("0x%08x", uint32(cc))
}
