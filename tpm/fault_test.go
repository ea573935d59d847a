package tpm_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// faultRig is an engine over a fault injector over a meter over the
// simulator, warmed up with one credential.
type faultRig struct {
	sim    *tpmtest.Locked
	faulty *tpmtest.Faulty
	meter  *tpm.Meter
	e      *tpm.Engine
	cred   []byte
}

func newFaultRig(t *testing.T, opt tpm.Options) *faultRig {
	t.Helper()
	r := &faultRig{sim: &tpmtest.Locked{Next: tpmtest.Simulator(t)}}
	r.meter = tpm.NewMeter(r.sim)
	r.faulty = tpmtest.NewFaulty(r.meter)
	r.e = tpmtest.Engine(t, r.faulty, opt)
	r.cred, _ = newCredential(t, r.e, rp("example.org"))
	if _, err := sign(r.e, r.cred, rp("example.org"), "warm"); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *faultRig) started() int { return r.meter.Snapshot()[tpm2.TPMCCStartAuthSession].Count }

func TestFaultsRecovered(t *testing.T) {
	cases := []struct {
		name  string
		fault tpmtest.Fault
		// new sessions the recovery may start (a session that saw an error is replaced)
		newSessions int
	}{
		{"session flushed under us", tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, Inject: tpmtest.InjectLoseSessions}, 1},
		{"session reference lost", tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, RC: 0x918}, 1},
		{"session out of step (BAD_AUTH on session 1)", tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, RC: tpm2.TPMRCBadAuth + 0x800 + 0x100}, 1},
		{"RETRY", tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, Repeat: 3, RC: tpm2.TPMRCRetry}, 0},
		{"YIELDED", tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, RC: tpm2.TPMRCYielded}, 0},
		{"TESTING", tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, Repeat: 2, RC: tpm2.TPMRCTesting}, 0},
		{"OBJECT_MEMORY", tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, Repeat: 4, RC: tpm2.TPMRCObjectMemory}, 0},
		{"SESSION_MEMORY on Sign", tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, Repeat: 2, RC: tpm2.TPMRCSessionMemory}, 0},
		// Rebuilding loads the storage key again through a one-off
		// epoch policy session (epoch.go), besides the pool's session.
		{"storage primary flushed under us", tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, RC: 0x910}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newFaultRig(t, tpm.Options{})
			before := r.started()
			r.faulty.Add(c.fault)
			if _, err := sign(r.e, r.cred, rp("example.org"), "m"); err != nil {
				t.Fatalf("sign under %s: %v", c.name, err)
			}
			if r.faulty.Hits() == 0 {
				t.Fatal("fault never hit")
			}
			if got := r.started() - before; got > c.newSessions {
				t.Errorf("recovery started %d sessions, want at most %d", got, c.newSessions)
			}
			// Warm again: no further sessions.
			mid := r.started()
			if _, err := sign(r.e, r.cred, rp("example.org"), "again"); err != nil {
				t.Fatal(err)
			}
			if r.started() != mid {
				t.Error("the pool did not keep the replacement session")
			}
			tpmtest.AssertNoLockout(t, r.sim)
		})
	}
}

func TestFatalFaultReported(t *testing.T) {
	r := newFaultRig(t, tpm.Options{})
	r.faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, RC: tpm2.TPMRCFailure})
	before := r.started()
	_, err := sign(r.e, r.cred, rp("example.org"), "m")
	var ce *tpm.CommandError
	if !errors.As(err, &ce) || ce.Command != "Sign" || !errors.Is(err, tpm2.TPMRCFailure) {
		t.Fatalf("err = %v, want a CommandError naming Sign and TPM_RC_FAILURE", err)
	}
	if !strings.Contains(err.Error(), "Sign") {
		t.Errorf("error text %q does not name the command", err)
	}
	// The session that saw the error was flushed: the next sign starts one.
	if _, err := sign(r.e, r.cred, rp("example.org"), "m"); err != nil {
		t.Fatalf("sign after the fault cleared: %v", err)
	}
	if r.started()-before != 1 {
		t.Errorf("started %d sessions after a failed Sign, want 1 (the failed one is never reused)", r.started()-before)
	}
	// No transient object leaked.
	if n := tpmtest.FlushAll(r.sim, tpm2.TPMHTTransient); n != 1 {
		t.Errorf("%d transient objects loaded after the operations, want 1 (the storage primary)", n)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	r := newFaultRig(t, tpm.Options{RetryBudget: 200 * time.Millisecond})
	r.faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 0, RC: tpm2.TPMRCRetry})
	start := time.Now()
	_, err := sign(r.e, r.cred, rp("example.org"), "m")
	if !errors.Is(err, tpm2.TPMRCRetry) {
		t.Fatalf("err = %v, want TPM_RC_RETRY after the budget", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
	r.faulty.Clear()
	if _, err := sign(r.e, r.cred, rp("example.org"), "m"); err != nil {
		t.Fatalf("after the fault cleared: %v", err)
	}
}

// TestConnectionFailure: one dropped connection is absorbed (the engine
// checks its primary survived and runs the operation again); one that
// keeps failing reaches the caller as the transport error; the next
// operation works once the connection is back.
func TestConnectionFailure(t *testing.T) {
	r := newFaultRig(t, tpm.Options{})
	r.faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, Inject: tpmtest.InjectClosed})
	if _, err := sign(r.e, r.cred, rp("example.org"), "once"); err != nil {
		t.Fatalf("one dropped connection: %v", err)
	}
	r.faulty.Clear()
	r.faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, Repeat: 2, Inject: tpmtest.InjectClosed})
	if _, err := sign(r.e, r.cred, rp("example.org"), "m"); !errors.Is(err, tpmtest.ErrInjectedClose) {
		t.Fatalf("err = %v, want the transport error", err)
	}
	if _, err := sign(r.e, r.cred, rp("example.org"), "m"); err != nil {
		t.Fatalf("after the connection came back: %v", err)
	}
}

func TestCounterNVRate(t *testing.T) {
	r := newFaultRig(t, tpm.Options{CounterBlock: 2})
	r.faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCNVIncrement, Occurrence: 0, Repeat: 1, RC: tpm2.TPMRCNVRate})
	r.faulty.Clear()
	r.faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCNVIncrement, Occurrence: 2, Repeat: 3, RC: tpm2.TPMRCNVRate})
	var last uint32
	for i := range 6 {
		v, err := r.e.NextCounter()
		if err != nil {
			t.Fatalf("NextCounter %d: %v", i, err)
		}
		if i > 0 && v <= last {
			t.Fatalf("counter %d after %d", v, last)
		}
		last = v
	}
	if r.faulty.Hits() == 0 {
		t.Fatal("NV_RATE never injected")
	}
}

// TestNoisyNeighbour plays another program on the same bare TPM that holds
// object and session slots for a while, and one that flushes every
// session it sees: the token waits or recovers, and never reports an
// authorization failure.
func TestNoisyNeighbour(t *testing.T) {
	r := newFaultRig(t, tpm.Options{})
	// Fill the object slots beside our storage primary.
	var held []tpm2.TPMHandle
	for range 2 {
		rsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
		}.Execute(r.sim)
		if err != nil {
			t.Fatalf("neighbour CreatePrimary: %v", err)
		}
		held = append(held, rsp.ObjectHandle)
	}
	release := time.AfterFunc(300*time.Millisecond, func() {
		for _, h := range held {
			tpm2.FlushContext{FlushHandle: h}.Execute(r.sim)
		}
	})
	defer release.Stop()
	start := time.Now()
	if _, err := sign(r.e, r.cred, rp("example.org"), "while the neighbour holds the slots"); err != nil {
		t.Fatalf("sign with slots held: %v", err)
	}
	t.Logf("waited %v for object slots", time.Since(start).Round(time.Millisecond))

	// A neighbour that flushes sessions in a loop.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tpmtest.FlushAll(r.sim, tpm2.TPMHTHMACSession)
			time.Sleep(time.Millisecond)
		}
	}()
	for i := range 50 {
		if _, err := sign(r.e, r.cred, rp("example.org"), "m"); err != nil {
			close(stop)
			<-done
			t.Fatalf("sign %d with a session-flushing neighbour: %v", i, err)
		}
	}
	close(stop)
	<-done
	tpmtest.AssertNoLockout(t, r.sim)
}

// On a bare TPM (FlushStale) a command whose response was lost may have
// loaded a key under a handle the engine never learned; the engine
// flushes and rebuilds, so repeated losses never fill the object slots.
func TestLostResponsesLeakNothingOnABareTPM(t *testing.T) {
	sim := tpmtest.Simulator(t)
	faulty := tpmtest.NewFaulty(sim)
	e := tpmtest.Engine(t, faulty, tpm.Options{FlushStale: true})
	for i := range 5 {
		faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCCreateLoaded, Occurrence: 1, Inject: tpmtest.InjectLoseResponse})
		if _, err := e.NewCredential(rp("example.org"), func(*tpm.Key) error { return nil }); err != nil {
			t.Fatalf("credential %d after a lost response: %v", i, err)
		}
		faulty.Clear()
	}
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTTransient) << 24, PropertyCount: 16}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	handles, _ := rsp.CapabilityData.Data.Handles()
	if n := len(handles.Handle); n != 1 {
		t.Fatalf("%d transient objects loaded, want only the storage primary", n)
	}
}
