package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// TestConcurrentChannelsUDP is the load test: 32 clients, each on its own
// UDP socket and CTAPHID channel, do 100 authentications each against one
// token, retrying CHANNEL_BUSY as real clients do. Every signature must
// verify and no request may fail, on the simulator and on a bare swtpm,
// alone and with a noisy neighbour on the same TPM (seed 000). It reports
// latency percentiles. Bounded: loopback only, a fixed number of requests.
func TestConcurrentChannelsUDP(t *testing.T) {
	perClient := 100
	if raceEnabled || testing.Short() {
		perClient = 10
	}
	for _, be := range tpmtest.Backends {
		for _, noisy := range []bool{false, true} {
			name := be.Name
			if noisy {
				name += "+noisy-neighbour"
			}
			t.Run(name, func(t *testing.T) {
				shared := &tpmtest.Locked{Next: be.Open(t)}
				e := tpmtest.Engine(t, shared, tpm.Options{})
				if noisy {
					stop := neighbour(shared)
					defer stop()
				}
				loadRun(t, e, 32, perClient)
				tpmtest.AssertNoLockout(t, shared)
			})
		}
	}
}

// neighbour plays another program on the same TPM: it grabs an object
// slot for a while and flushes every session it can see, over and over.
func neighbour(t *tpmtest.Locked) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			rsp, err := tpm2.CreatePrimary{
				PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
				InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
			}.Execute(t)
			time.Sleep(2 * time.Millisecond)
			if err == nil {
				tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(t)
			}
			tpmtest.FlushAll(t, tpm2.TPMHTHMACSession)
			time.Sleep(3 * time.Millisecond)
		}
	}()
	return func() { close(done); wg.Wait() }
}

func loadRun(t *testing.T, e *tpm.Engine, clients, perClient int) {
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}})
	defer a.Close()
	dev, err := ctaphid.ListenUDP("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := dev.(interface{ LocalAddr() net.Addr }).LocalAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	served := make(chan struct{})
	go func() { defer close(served); ctaphid.NewServer(dev, a, ctaphid.Options{}).Serve(ctx) }()
	defer func() { cancel(); <-served }()

	app := sha256.Sum256([]byte("https://example.org"))
	var (
		mu       sync.Mutex
		lat      []time.Duration
		busy     atomic.Int64
		failures atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr, err := ctaphid.DialUDP(addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer tr.Close()
			c := ctaphid.NewClient(tr)
			retry := func(f func() error) error {
				for {
					err := f()
					if e, ok := ctaphid.ErrorCode(err); ok && e == ctaphid.ErrChannelBusy {
						busy.Add(1)
						time.Sleep(time.Millisecond)
						continue
					}
					return err
				}
			}
			if err := retry(func() error { return c.Init(ctx) }); err != nil {
				t.Errorf("client %d init: %v", i, err)
				failures.Add(1)
				return
			}
			var reg *u2fhost.Registration
			if err := retry(func() (err error) { reg, err = u2fhost.Register(ctx, c, [32]byte{byte(i)}, app); return err }); err != nil {
				t.Errorf("client %d register: %v", i, err)
				failures.Add(1)
				return
			}
			for j := range perClient {
				var chal [32]byte
				binary.BigEndian.PutUint32(chal[:], uint32(i))
				binary.BigEndian.PutUint32(chal[4:], uint32(j))
				t0 := time.Now()
				var as *u2fhost.Assertion
				err := retry(func() (err error) { as, err = u2fhost.Authenticate(ctx, c, chal, app, reg.KeyHandle, 0x03); return err })
				d := time.Since(t0)
				if err != nil {
					failures.Add(1)
					t.Errorf("client %d auth %d: %v", i, j, err)
					return
				}
				msg := append(append(app[:], as.FlagsAndCounter...), chal[:]...)
				h := sha256.Sum256(msg)
				if !ecdsa.VerifyASN1(reg.PublicKey, h[:], as.Signature) {
					failures.Add(1)
					t.Errorf("client %d auth %d: signature does not verify", i, j)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d failed requests", n)
	}
	if len(lat) != clients*perClient {
		t.Fatalf("%d authentications, want %d", len(lat), clients*perClient)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(10 * time.Microsecond) }
	t.Logf("%d clients × %d authentications: 0 errors, %d CHANNEL_BUSY retries, %.0f auth/s, latency p50 %v p95 %v p99 %v max %v",
		clients, perClient, busy.Load(), float64(len(lat))/elapsed.Seconds(), pct(0.5), pct(0.95), pct(0.99), lat[len(lat)-1])
}
