package replay

import (
	"encoding/binary"
	"path/filepath"
	"sync/atomic"
	"testing"
)

func benchStore(b *testing.B) *Store {
	s, err := Open(filepath.Join(b.TempDir(), "replay.log"), Options{MaxEntries: 1 << 22})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkRecord is one signature's worth of store work, alone: a write
// and an fsync.
func BenchmarkRecord(b *testing.B) {
	s := benchStore(b)
	var i uint64
	for b.Loop() {
		i++
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], i)
		if err := s.Record(Key(k[:])); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.Status().Fsyncs)/float64(b.N), "fsyncs/op")
}

// BenchmarkRecordParallel is 32 concurrent signers: group commit makes
// them share fsyncs.
func BenchmarkRecordParallel(b *testing.B) {
	s := benchStore(b)
	var n atomic.Uint64
	b.SetParallelism(16) // 2 cores × 16 = 32 goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], n.Add(1))
			if err := s.Record(Key(k[:])); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(s.Status().Fsyncs)/float64(b.N), "fsyncs/op")
}

func BenchmarkCheck(b *testing.B) {
	s := benchStore(b)
	k := Key([]byte("x"))
	s.Record(k)
	for b.Loop() {
		s.Check(k)
	}
}
