package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
)

// BenchmarkE2ELoad is issue 17's load figure: 32 clients, each with its
// own UDP socket and CTAPHID channel, 100 U2F authentications each against
// the real daemon, every signature verified afterwards; 0 errors or it
// fails. A client whose request arrives while another's transaction runs
// is answered CHANNEL_BUSY and retries after 1 ms (busyRetry), so
// the tail is mostly time spent waiting for a turn: it prints how much.
// Also the daemon's ready time (process start to the first answered
// PING) and resident memory: idle after start, after the load, and with
// 100 discoverable credentials. b.N only tells the probe run (N=1, one
// authentication per client) from the measured one.
func BenchmarkE2ELoad(b *testing.B) {
	const clients = 32
	app := sha256.Sum256([]byte("https://load.example"))
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			d := startDaemon(b, be.daemonTPM(b))
			idleRSS, idleAnon := d.rssKiB(b), d.anonKiB(b)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			setup, err := dialUDP(d.Addr)
			if err != nil {
				b.Fatal(err)
			}
			defer setup.Close()
			if err := setup.Init(ctx); err != nil {
				b.Fatal(err)
			}
			reg, err := u2fhost.Register(ctx, setup.Client, [32]byte{}, app)
			if err != nil {
				b.Fatal(err)
			}
			cs := make([]*client, clients)
			for i := range cs {
				if cs[i], err = dialUDP(d.Addr); err != nil {
					b.Fatal(err)
				}
				defer cs[i].Close()
				if err := cs[i].Init(ctx); err != nil {
					b.Fatal(err)
				}
			}
			var round uint64
			b.Run(fmt.Sprintf("%dx100", clients), func(b *testing.B) {
				perClient := 100
				if b.N == 1 {
					perClient = 1
				}
				round++
				type result struct {
					lat, busyWait time.Duration
					turn          time.Duration // from the first attempt to the one served
					busy          int
					chal          [32]byte
					a             *u2fhost.Assertion
				}
				results := make([][]result, clients)
				var wg sync.WaitGroup
				errs := make(chan error, clients)
				start := time.Now()
				b.ResetTimer()
				for ci, c := range cs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range perClient {
							var chal [32]byte
							binary.BigEndian.PutUint64(chal[:], round)
							binary.BigEndian.PutUint32(chal[8:], uint32(ci))
							binary.BigEndian.PutUint32(chal[12:], uint32(i))
							busy, wait := c.busy, c.busyWait
							t0 := time.Now()
							a, err := c.u2fAuthenticate(ctx, 0, app, reg.KeyHandle, withChallenge(chal))
							if err != nil {
								errs <- fmt.Errorf("client %d, authentication %d: %w", ci, i, err)
								return
							}
							results[ci] = append(results[ci], result{time.Since(t0), c.busyWait - wait, c.served.Sub(t0), c.busy - busy, chal, a})
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				var lat, waits sampler
				var all []result
				busy := 0
				for _, rs := range results {
					for _, r := range rs {
						lat = append(lat, r.lat)
						waits = append(waits, r.busyWait)
						busy += r.busy
						all = append(all, r)
					}
				}
				for _, r := range all {
					if !verifyU2F(reg.PublicKey, app, r.chal, r.a) {
						b.Fatal("a signature does not verify")
					}
				}
				// How much of the slowest 5% was spent waiting for a turn.
				p95 := lat.quantile(.95)
				var tailLat, tailWait, tailTurn time.Duration
				for _, r := range all {
					if r.lat >= p95 {
						tailLat += r.lat
						tailWait += r.busyWait
						tailTurn += r.turn
					}
				}
				n := len(all)
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(ms(lat.quantile(.5)), "p50-ms")
				b.ReportMetric(ms(p95), "p95-ms")
				b.ReportMetric(ms(lat.quantile(.99)), "p99-ms")
				b.ReportMetric(float64(n)/elapsed.Seconds(), "auth/s")
				if perClient > 1 {
					fmt.Fprintf(os.Stdout, "    %s: %d clients x %d U2F authentications, 0 errors, all signatures verified: %.0f auth/s; latency p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms; %.1f CHANNEL_BUSY answers per request; in the slowest 5%% %.0f%% of the time went before the attempt that was served (%.0f%% sleeping between retries, the rest in the rejected round trips)\n",
						be.name, clients, perClient, float64(n)/elapsed.Seconds(), ms(lat.quantile(.5)), ms(p95), ms(lat.quantile(.99)), ms(lat.quantile(1)),
						float64(busy)/float64(n), 100*float64(tailTurn)/float64(tailLat), 100*float64(tailWait)/float64(tailLat))
				}
			})
			loadRSS, loadAnon := d.rssKiB(b), d.anonKiB(b)
			for i := range 100 {
				if _, _, err := setup.makeCredential(ctx, "load.example", []byte(fmt.Sprintf("user %03d", i)), true); err != nil {
					b.Fatal(err)
				}
			}
			credRSS, credAnon := d.rssKiB(b), d.anonKiB(b)
			b.ReportMetric(ms(d.Ready), "ready-ms")
			b.ReportMetric(float64(idleRSS)/1024, "idle-rss-MiB")
			b.ReportMetric(float64(credRSS)/1024, "rss-100-passkeys-MiB")
			fmt.Fprintf(os.Stdout, "    %s: ready %.0f ms after start (first answered PING); VmRSS (of it RssAnon) idle %.1f (%.1f) MiB, after the load %.1f (%.1f) MiB, with 100 discoverable credentials %.1f (%.1f) MiB\n",
				be.name, ms(d.Ready), float64(idleRSS)/1024, float64(idleAnon)/1024, float64(loadRSS)/1024, float64(loadAnon)/1024, float64(credRSS)/1024, float64(credAnon)/1024)
		})
	}
}

// verifyU2F checks a U2F authentication signature (Raw Message Formats
// v1.2 section 5.4: appID hash, flags, counter, challenge).
func verifyU2F(pub *ecdsa.PublicKey, app, chal [32]byte, a *u2fhost.Assertion) bool {
	h := sha256.New()
	h.Write(app[:])
	h.Write(a.FlagsAndCounter)
	h.Write(chal[:])
	return ecdsa.VerifyASN1(pub, h.Sum(nil), a.Signature)
}
