package tpm_test

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func wantUVRetries(t *testing.T, e *tpm.Engine, want int) {
	t.Helper()
	if n, err := e.UVRetries(); err != nil || n != want {
		t.Fatalf("UVRetries = %d, %v; want %d", n, err, want)
	}
}

// Non-matching fingers count down to blocked; refunds (reader unavailable,
// cancel) give the attempt back; a match or the right PIN resets.
func TestUVRetriesCounted(t *testing.T) {
	e, _ := pinEngine(t, tpmtest.Simulator(t))
	wantUVRetries(t, e, tpm.UVRetries)
	if left, err := e.SpendUVAttempt(); err != nil || left != tpm.UVRetries-1 {
		t.Fatalf("spend: %d, %v", left, err)
	}
	if err := e.RefundUVAttempt(); err != nil {
		t.Fatal(err)
	}
	wantUVRetries(t, e, tpm.UVRetries)
	for want := tpm.UVRetries - 1; want >= 0; want-- {
		if left, err := e.SpendUVAttempt(); err != nil || left != want {
			t.Fatalf("spend: %d, %v; want %d left", left, err, want)
		}
	}
	if _, err := e.SpendUVAttempt(); !errors.Is(err, tpm.ErrUVBlocked) {
		t.Fatalf("spend when blocked: %v", err)
	}
	wantUVRetries(t, e, 0)
	if err := e.ResetUVRetries(); err != nil {
		t.Fatal(err)
	}
	wantUVRetries(t, e, tpm.UVRetries)
	if err := e.RefundUVAttempt(); err != nil { // nothing spent: stays
		t.Fatal(err)
	}
	wantUVRetries(t, e, tpm.UVRetries)
}

// The count is in the TPM: another engine (a restart) sees it, and so
// does one started from an identity.json restored from a backup taken
// before any attempt, even before the index existed.
func TestUVRetriesSurviveRestartAndRestoredIdentity(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	backup := s.id
	for range 3 {
		if _, err := e.SpendUVAttempt(); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	for _, id := range []tpm.Identity{s.id, backup} {
		e2, _, err := tpm.New(sim, id, tpm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		wantUVRetries(t, e2, tpm.UVRetries-3)
		e2.Close()
	}
}

// An attempt is spent before the reader is asked: a daemon killed while
// the reader waits (no refund, no answer) leaves it spent.
func TestUVAttemptSpentBeforeAnswer(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	if _, err := e.SpendUVAttempt(); err != nil {
		t.Fatal(err)
	}
	e.Close() // killed: neither the refund nor the reset ran
	e2, _, err := tpm.New(sim, s.id, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	wantUVRetries(t, e2, tpm.UVRetries-1)
}

// authenticatorReset unblocks UV (a new identity, a new index) and
// removes the old identity's index.
func TestResetGivesUVRetriesBack(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	old := s.id.Seed
	for range tpm.UVRetries {
		if _, err := e.SpendUVAttempt(); err != nil {
			t.Fatal(err)
		}
	}
	wantUVRetries(t, e, 0)
	if _, err := e.Reset(); err != nil {
		t.Fatal(err)
	}
	wantUVRetries(t, e, tpm.UVRetries)
	if _, _, err := readNV(sim, tpm.UVIndexForTest(old)); !errors.Is(err, tpm2.TPMRCHandle) {
		t.Fatalf("the old identity's UV index: %v; want it removed", err)
	}
}

// An index at our handle that is not ours is never used or written.
func TestForeignUVIndexRefused(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	idx := tpm.UVIndexForTest(s.id.Seed)
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(idx), NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthWrite: true, AuthRead: true, NoDA: true, OwnerWrite: true}, DataSize: 4}),
	}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.SpendUVAttempt(); !errors.Is(err, tpm.ErrNVIndexForeign) {
		t.Fatalf("spend on a foreign index: %v", err)
	}
	if _, err := e.UVRetries(); !errors.Is(err, tpm.ErrNVIndexForeign) {
		t.Fatalf("retries on a foreign index: %v", err)
	}
}
