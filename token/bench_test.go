package token_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/tokentest"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
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
