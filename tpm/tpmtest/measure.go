package tpmtest

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// Backend is a TPM the benchmarks compare on.
type Backend struct {
	Name string
	Open func(testing.TB) transport.TPM
}

// Backends are the simulator and swtpm (skipped where not installed).
var Backends = []Backend{
	{"sim", func(tb testing.TB) transport.TPM { return Simulator(tb) }},
	{"swtpm", func(tb testing.TB) transport.TPM {
		t, _, err := tpm.Open(SWTPM(tb))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { t.Close() })
		return t
	}},
}

// Measure runs op b.N times after one warm-up run, reports the median
// latency and the TPM commands per operation (counted by meter), prints a
// table row with the commands by code, and returns the median.
func Measure(b *testing.B, meter *tpm.Meter, op func() error) time.Duration {
	b.Helper()
	if err := op(); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	before := meter.Snapshot()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	used := meter.Snapshot().Sub(before)
	slices.Sort(lat)
	median := lat[len(lat)/2]
	n := float64(len(lat))
	b.ReportMetric(float64(median.Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(used.Total())/n, "tpm-cmds/op")
	b.ReportMetric(0, "ns/op")
	if len(lat) > 1 {
		fmt.Fprintf(os.Stdout, "    %-52s median %7.2f ms  %4.1f TPM commands/op: %s\n",
			b.Name(), float64(median.Microseconds())/1000, float64(used.Total())/n, perOp(used, len(lat)))
	}
	return median
}

func perOp(s tpm.Stats, n int) string {
	out := make(tpm.Stats, len(s))
	for cc, v := range s {
		v.Count = (v.Count + n/2) / n
		if v.Count > 0 {
			out[cc] = v
		}
	}
	return out.String()
}
