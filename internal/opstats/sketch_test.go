package opstats

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 1000, 1 << 20, 1<<20 + 1, 1<<40 - 1} {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf not monotonic at %d", v)
		}
		prev = i
		if lo, hi := bucketLow(i), bucketLow(i+1); v < lo || (i < maxBucket && v >= hi) {
			t.Fatalf("%d in bucket %d = [%d, %d)", v, i, lo, hi)
		}
	}
	if bucketOf(math.MaxUint64) != maxBucket {
		t.Fatal("huge values must land in the last bucket")
	}
}

// TestQuantiles: against exact nearest-rank quantiles of random latencies
// spread over six orders of magnitude, within the sketch's 3.2%.
func TestQuantiles(t *testing.T) {
	var s Sketch
	if s.Quantile(.5) != 0 {
		t.Fatal("empty sketch")
	}
	r := rand.New(rand.NewPCG(1, 2))
	var vals []time.Duration
	for range 10000 {
		d := time.Duration(math.Exp(r.Float64()*14)) * time.Microsecond / 10
		vals = append(vals, d)
		s.Add(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1} {
		want := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := s.Quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.032 {
			t.Errorf("q%.3f = %v, exact %v (%.1f%% off)", q, got, want, 100*rel)
		}
	}
	if s.Count() != 10000 {
		t.Fatal(s.Count())
	}
	var one Sketch
	one.Add(5 * time.Millisecond)
	one.Add(-time.Second)
	if got := one.Quantile(1); got < 4840*time.Microsecond || got > 5160*time.Microsecond {
		t.Errorf("max of {0, 5 ms} = %v", got)
	}
	if got := one.Quantile(0.5); got != 0 {
		t.Errorf("median of {0, 5 ms} = %v", got)
	}
}
