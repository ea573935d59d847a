// Package opstats is `tpm-u2f run --stats`' per-operation accounting:
// for each kind of request (U2F register and authenticate, CTAP2
// makeCredential, getAssertion and clientPIN), where its time went — in
// TPM commands, in the replay store, waiting for the user, and the rest
// (CTAPHID, parsing, crypto outside the TPM, scheduling) — as percentiles
// since the daemon started.
package opstats

import (
	"math/bits"
	"time"
)

// subBits sets the sketch's resolution: 2^subBits buckets per doubling,
// so a bucket is at most 1/16 (6.25%) wide and a quantile, reported as its
// bucket's midpoint, is within 3.2% of an observed value.
const subBits = 4

// maxBucket bounds the sketch at 2^40 ns (about 18 minutes); longer
// durations count in the last bucket.
const maxBucket = (40-subBits+1)<<subBits + (1<<subBits - 1)

// Sketch is a log-linear histogram of durations: fixed size (about 4.7 KiB),
// no allocation per value. The zero value is empty and ready. It is not
// safe for concurrent use.
type Sketch struct {
	counts [maxBucket + 1]uint64
	n      uint64
}

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - 1 // v is in [2^e, 2^(e+1))
	i := (e-subBits+1)<<subBits + int(v>>(e-subBits)&(1<<subBits-1))
	return min(i, maxBucket)
}

// bucketLow is the smallest value in bucket i.
func bucketLow(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	e := i>>subBits + subBits - 1
	return 1<<e | uint64(i&(1<<subBits-1))<<(e-subBits)
}

// Add counts one duration (negative ones as 0).
func (s *Sketch) Add(d time.Duration) {
	s.counts[bucketOf(uint64(max(d, 0)))]++
	s.n++
}

// Count is how many durations were added.
func (s *Sketch) Count() uint64 { return s.n }

// Quantile returns the q-quantile (0 < q <= 1) by nearest rank: the
// midpoint of the bucket holding the ceil(q*n)-th smallest value. Zero
// when empty.
func (s *Sketch) Quantile(q float64) time.Duration {
	if s.n == 0 {
		return 0
	}
	rank := uint64(q*float64(s.n) + 0.999999)
	rank = min(max(rank, 1), s.n)
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketLow(i), bucketLow(i+1)
			if i < 1<<subBits {
				return time.Duration(lo) // exact
			}
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	return time.Duration(bucketLow(maxBucket))
}
