package fprintd_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd/fprintdtest"
)

// setup runs a private bus (standing in for the system bus) with the
// fake fprintd, and a Verifier for "alice".
func setup(t *testing.T, s *fprintdtest.Server) *fprintd.Verifier {
	t.Helper()
	addr := notifytest.SessionBus(t)
	if s != nil {
		s.Serve(t, addr)
	}
	return fprintd.New(notifytest.Connect(t, addr), "alice", nil)
}

func verify(t *testing.T, v *fprintd.Verifier, timeout time.Duration) (fprintd.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return v.Verify(ctx)
}

// released checks that every Claim was followed by a Release.
func released(t *testing.T, s *fprintdtest.Server) {
	t.Helper()
	calls := s.Calls()
	claims, releases := 0, 0
	for _, c := range calls {
		switch c {
		case "Claim":
			claims++
		case "Release":
			releases++
		}
	}
	if claims != releases {
		t.Errorf("%d Claims, %d Releases: %v", claims, releases, calls)
	}
}

func TestMatchAndNoMatch(t *testing.T) {
	s := &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Script: [][]fprintdtest.Status{
		{{Result: "verify-retry-scan"}, {Result: "verify-match", Done: true}},
		{{Result: "verify-no-match", Done: true}},
	}}
	v := setup(t, s)
	if r, err := verify(t, v, 5*time.Second); err != nil || r != fprintd.Match {
		t.Fatalf("retry-scan then match: %v, %v", r, err)
	}
	if r, err := verify(t, v, 5*time.Second); err != nil || r != fprintd.NoMatch {
		t.Fatalf("no match: %v, %v", r, err)
	}
	released(t, s)
	want := []string{"Claim", "VerifyStart", "VerifyStop", "Release"}
	if got := s.Calls(); !slices.Equal(got[:4], want) {
		t.Errorf("calls %v, want %v first", got, want)
	}
}

// A retry status that ends fprintd's attempt (done) starts another.
func TestRetryThatEndsTheAttempt(t *testing.T) {
	s := &fprintdtest.Server{Enrolled: []string{"left-thumb"}, Script: [][]fprintdtest.Status{
		{{Result: "verify-swipe-too-short", Done: true}},
		{{Result: "verify-match", Done: true}},
	}}
	v := setup(t, s)
	if r, err := verify(t, v, 5*time.Second); err != nil || r != fprintd.Match {
		t.Fatalf("%v, %v", r, err)
	}
	released(t, s)
}

// A match left over from an earlier verification, or sent by another
// process on the bus, is not a match for this one.
func TestStaleAndSpoofedMatchesIgnored(t *testing.T) {
	s := &fprintdtest.Server{
		Enrolled: []string{"right-index-finger"},
		Stale:    &fprintdtest.Status{Result: "verify-match", Done: true},
		Script:   [][]fprintdtest.Status{{{Result: "verify-no-match", Done: true}}},
	}
	addr := notifytest.SessionBus(t)
	s.Serve(t, addr)
	v := fprintd.New(notifytest.Connect(t, addr), "alice", nil)
	spoofer := notifytest.Connect(t, addr)
	go func() {
		for range 20 {
			spoofer.Emit(fprintdtest.DevicePath, "net.reactivated.Fprint.Device.VerifyStatus", "verify-match", true)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	if r, err := verify(t, v, 5*time.Second); err != nil || r != fprintd.NoMatch {
		t.Fatalf("with a stale and a spoofed match: %v, %v, want no match", r, err)
	}
	released(t, s)
}

func TestUnavailableIsNeverAFailedVerification(t *testing.T) {
	for name, s := range map[string]*fprintdtest.Server{
		"no reader":     {NoReader: true},
		"busy":          {Enrolled: []string{"x"}, ClaimError: "AlreadyInUse"},
		"disconnected":  {Enrolled: []string{"x"}, Script: [][]fprintdtest.Status{{{Result: "verify-disconnected", Done: true}}}},
		"fprintd fails": {Enrolled: []string{"x"}, Script: [][]fprintdtest.Status{{{Result: "verify-unknown-error", Done: true}}}},
	} {
		t.Run(name, func(t *testing.T) {
			v := setup(t, s)
			if _, err := verify(t, v, 5*time.Second); !errors.Is(err, fprintd.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			released(t, s)
		})
	}
	t.Run("no fprintd", func(t *testing.T) {
		v := setup(t, nil)
		if _, err := verify(t, v, 5*time.Second); !errors.Is(err, fprintd.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		if st := v.Probe(context.Background()); st != fprintd.NoReader {
			t.Errorf("Probe = %v, want NoReader", st)
		}
	})
}

func TestNothingEnrolled(t *testing.T) {
	s := &fprintdtest.Server{}
	v := setup(t, s)
	if st := v.Probe(context.Background()); st != fprintd.NothingEnrolled {
		t.Errorf("Probe = %v, want NothingEnrolled", st)
	}
	if _, err := verify(t, v, 5*time.Second); !errors.Is(err, fprintd.ErrNoEnrolledFingers) {
		t.Fatalf("err = %v, want ErrNoEnrolledFingers", err)
	}
	released(t, s)
	s.SetEnrolled("right-index-finger")
	if st := v.Probe(context.Background()); st != fprintd.Ready {
		t.Errorf("Probe = %v, want Ready", st)
	}
}

// CANCEL or the prompt's timeout stops the verification and releases the
// reader.
func TestCancelStopsAndReleases(t *testing.T) {
	s := &fprintdtest.Server{Enrolled: []string{"x"}, Script: [][]fprintdtest.Status{{}}}
	v := setup(t, s)
	_, err := verify(t, v, 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	calls := s.Calls()
	if !slices.Contains(calls, "VerifyStop") {
		t.Errorf("no VerifyStop after cancel: %v", calls)
	}
	released(t, s)
}

// A CANCEL that arrives while fprintd has not yet answered VerifyStart:
// fprintd may be verifying already, so it is stopped, then released.
func TestCancelDuringVerifyStart(t *testing.T) {
	s := &fprintdtest.Server{Enrolled: []string{"x"}, StartDelay: 300 * time.Millisecond}
	v := setup(t, s)
	if _, err := verify(t, v, 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	calls := s.Calls()
	if !slices.Contains(calls, "VerifyStop") {
		t.Errorf("no VerifyStop after a cancel during VerifyStart: %v", calls)
	}
	released(t, s)
}

// fprintd may answer right after VerifyStart's reply (the real one does
// when the reader fails at once: TestRealFprintdWithVirtualReader saw
// verify-disconnected dropped and Verify wait for its timeout). That
// answer is this verification's, however soon it comes.
func TestAnswerRightAfterVerifyStartIsKept(t *testing.T) {
	const n = 200
	s := &fprintdtest.Server{Enrolled: []string{"x"}, Immediate: true, Always: &fprintdtest.Status{Result: "verify-match", Done: true}}
	v := setup(t, s)
	for i := range n {
		// A second is ample: the answer follows the reply at once.
		r, err := verify(t, v, time.Second)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("verification %d of %d: the answer sent right after VerifyStart's reply was dropped", i+1, n)
		}
		if err != nil || r != fprintd.Match {
			t.Fatalf("%v, %v; want a match", r, err)
		}
	}
	released(t, s)
}
