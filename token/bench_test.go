package token_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/tokentest"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/replay"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// BenchmarkU2F measures a warm U2F authenticate and register end to end
// (APDU over CTAPHID over the in-memory transport, through the token, on
// the TPM) against a raw Load+Sign+Flush on the same backend in the same
// run. `make bench` prints the table docs/performance.md records.
func BenchmarkU2F(b *testing.B) {
	app := sha256.Sum256([]byte("https://example.org"))
	for _, be := range tpmtest.Backends {
		b.Run(be.Name, func(b *testing.B) {
			meter := tpm.NewMeter(be.Open(b))
			var floor time.Duration
			b.Run("raw-Load+Sign+Flush", func(b *testing.B) {
				raw := tpmtest.NewRaw(b, meter)
				floor = tpmtest.Measure(b, meter, func() error { return raw.LoadSignFlush(raw.Parent) })
			})
			e := tpmtest.Engine(b, meter, tpm.Options{})
			store, err := replay.Open(filepath.Join(b.TempDir(), "replay.log"), replay.Options{MaxEntries: 1 << 20})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { store.Close() })
			for _, v := range []struct {
				name  string
				guard token.ReplayGuard
			}{{"authenticate", nil}, {"authenticate+replay-store", store}} {
				b.Run(v.name, func(b *testing.B) {
					c := tokentest.Serve(b, e, v.guard)
					ctx := context.Background()
					reg, err := u2fhost.Register(ctx, c, [32]byte{}, app)
					if err != nil {
						b.Fatal(err)
					}
					var i uint64
					median := tpmtest.Measure(b, meter, func() error {
						i++
						var chal [32]byte
						binary.BigEndian.PutUint64(chal[:], i)
						_, err := u2fhost.Authenticate(ctx, c, chal, app, reg.KeyHandle, 0x03)
						return err
					})
					if floor > 0 {
						b.ReportMetric(float64(median)/float64(floor), "x-raw")
					}
				})
			}
			b.Run("register", func(b *testing.B) {
				c := tokentest.Serve(b, e, nil)
				tpmtest.Measure(b, meter, func() error {
					_, err := u2fhost.Register(context.Background(), c, [32]byte{}, app)
					return err
				})
			})
		})
	}
}

// BenchmarkU2FConcurrent measures warm U2F authenticates from 32
// concurrent clients straight into the token core (the TPM serialises
// them; CTAPHID would too, one transaction per device), without and with
// the replay store: what the store's fsync adds when many requests
// arrive together, and how many of them share one fsync (group commit).
func BenchmarkU2FConcurrent(b *testing.B) {
	app := sha256.Sum256([]byte("https://example.org"))
	for _, be := range tpmtest.Backends {
		b.Run(be.Name, func(b *testing.B) {
			e := tpmtest.Engine(b, be.Open(b), tpm.Options{})
			store, err := replay.Open(filepath.Join(b.TempDir(), "replay.log"), replay.Options{MaxEntries: 1 << 20})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { store.Close() })
			for _, v := range []struct {
				name  string
				guard token.ReplayGuard
			}{{"authenticate", nil}, {"authenticate+replay-store", store}} {
				b.Run(v.name, func(b *testing.B) {
					cfg := token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}}
					if v.guard != nil {
						cfg.Replay = v.guard
					}
					a := token.New(cfg)
					defer a.Close()
					var chal [32]byte
					rsp := a.HandleAPDU(context.Background(), (&token.APDU{INS: 0x01, P1: 0x03, Data: append(chal[:], app[:]...)}).Encode(false))
					handle := rsp[67 : 67+int(rsp[66])]
					var n atomic.Uint64
					fsyncs := store.Status().Fsyncs
					b.SetParallelism(32 / runtime.GOMAXPROCS(0))
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							var c [32]byte
							binary.BigEndian.PutUint64(c[:], n.Add(1))
							data := append(append(append(c[:], app[:]...), byte(len(handle))), handle...)
							// P1 0x08, don't-enforce-user-presence-and-sign: the
							// prompt gate (one prompt at a time) stays out of it.
							out := a.HandleAPDU(context.Background(), (&token.APDU{INS: 0x02, P1: 0x08, Data: data}).Encode(false))
							if len(out) < 2 || out[len(out)-2] != 0x90 {
								b.Errorf("authenticate: %x", out[max(0, len(out)-2):])
								return
							}
						}
					})
					if v.guard != nil {
						b.ReportMetric(float64(store.Status().Fsyncs-fsyncs)/float64(b.N), "fsyncs/op")
					}
				})
			}
		})
	}
}
