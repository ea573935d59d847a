package replay

import (
	"encoding/binary"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
)

func benchStore(b *testing.B) *Store {
	s, err := Open(filepath.Join(b.TempDir(), "replay.log"), Options{MaxEntries: 1 << 24})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	// The first record also arms the state file; keep that out of the figures.
	if err := s.Record(Key([]byte("warm-up"))); err != nil {
		b.Fatal(err)
	}
	return s
}

func benchKey(i uint64) [32]byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], i)
	return Key(k[:])
}

// reportFsyncs reports the fsyncs the benchmark's records cost: log
// appends, and any rewrite or state file write they caused.
func reportFsyncs(b *testing.B, s *Store, before uint64) {
	b.ReportMetric(float64(s.Status().Fsyncs-before)/float64(b.N), "fsyncs/op")
}

// BenchmarkRecord is one signer: every record is a write and an fsync.
func BenchmarkRecord(b *testing.B) {
	s := benchStore(b)
	before := s.Status().Fsyncs
	var i uint64
	for b.Loop() {
		i++
		if err := s.Record(benchKey(i)); err != nil {
			b.Fatal(err)
		}
	}
	reportFsyncs(b, s, before)
}

// BenchmarkRecordParallel is 32 concurrent signers: group commit lets
// them share writes and fsyncs.
func BenchmarkRecordParallel(b *testing.B) {
	s := benchStore(b)
	before := s.Status().Fsyncs
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((32 + procs - 1) / procs) // 32 goroutines on any machine up to 32 CPUs
	var n atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Record(benchKey(n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportFsyncs(b, s, before)
}

// BenchmarkCheck is the lookup before every signature, against a store
// holding 100 000 entries.
func BenchmarkCheck(b *testing.B) {
	s := benchStore(b)
	for i := range uint64(100_000) {
		s.mu.Lock() // fill memory directly: 100 000 fsyncs would take a while
		k := benchKey(i)
		s.entries[k] = s.advance()
		s.queue = append(s.queue, record{k, s.lastSeen})
		s.mu.Unlock()
	}
	keys := make([][32]byte, 1024) // half recorded, half not
	for i := range keys {
		keys[i] = benchKey(uint64(i) * 199)
	}
	var i int
	for b.Loop() {
		i++
		s.Check(keys[i%len(keys)])
	}
}
