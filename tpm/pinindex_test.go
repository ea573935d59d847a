package tpm_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func pinHash(p string) []byte {
	h := sha256.Sum256([]byte(p))
	return h[:16]
}

// saved keeps the identity the engine persists, as identity.json would.
type saved struct{ id tpm.Identity }

func (s *saved) persist(id tpm.Identity) error { s.id = id; return nil }

func pinEngine(t *testing.T, tr transport.TPM) (*tpm.Engine, *saved) {
	t.Helper()
	s := &saved{}
	e, id, err := tpm.New(tr, tpm.NewIdentity(), tpm.Options{Persist: s.persist})
	if err != nil {
		t.Fatal(err)
	}
	s.id = id
	t.Cleanup(func() { e.Close() })
	return e, s
}

func wantStatus(t *testing.T, e *tpm.Engine, set bool, retries int) {
	t.Helper()
	st, err := e.PINStatus()
	if err != nil || st.Set != set || st.Retries != retries {
		t.Fatalf("PINStatus = %+v, %v; want set=%v retries=%d", st, err, set, retries)
	}
}

func TestPINCountedByTheTPM(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	wantStatus(t, e, false, 0)
	if _, err := e.CheckPIN(pinHash("1234")); !errors.Is(err, tpm.ErrPINNotSet) {
		t.Fatalf("CheckPIN without PIN: %v", err)
	}
	if err := e.SetPIN(pinHash("1234")); err != nil {
		t.Fatal(err)
	}
	if s.id.PINIndex == 0 || s.id.PINPending != 0 {
		t.Fatalf("persisted identity %+v", s.id)
	}
	if err := e.SetPIN(pinHash("5678")); !errors.Is(err, tpm.ErrPINSet) {
		t.Fatalf("second SetPIN: %v", err)
	}
	wantStatus(t, e, true, 8)
	if r, err := e.CheckPIN(pinHash("1234")); err != nil || r != 8 {
		t.Fatalf("right PIN: %d, %v", r, err)
	}
	for want := 7; want >= 5; want-- {
		if r, err := e.CheckPIN(pinHash("0000")); !errors.Is(err, tpm.ErrWrongPIN) || r != want {
			t.Fatalf("wrong PIN: %d, %v; want %d retries", r, err, want)
		}
	}
	wantStatus(t, e, true, 5)
	// A wrong PIN sent straight to the TPM, not through the engine, is
	// counted all the same.
	if err := rawPINRead(sim, s.id.PINIndex, pinHash("9999")); !errors.Is(err, tpm2.TPMRCBadAuth) && !errors.Is(err, tpm2.TPMRCAuthFail) {
		t.Fatalf("raw wrong PIN: %v", err)
	}
	wantStatus(t, e, true, 4)
	if err := rawPINRead(sim, s.id.PINIndex, pinHash("1234")); err != nil {
		t.Fatalf("raw right PIN: %v", err)
	}
	wantStatus(t, e, true, 8) // the TPM itself clears the count on success
	for i := 0; i < 3; i++ {
		e.CheckPIN(pinHash("0000"))
	}
	wantStatus(t, e, true, 5)
	// A second engine (another process) sees the same count: it is in the TPM.
	e2, _, err := tpm.New(sim, s.id, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e2, true, 5)
	e2.Close()
	// The right PIN gives the retries back.
	if r, err := e.CheckPIN(pinHash("1234")); err != nil || r != 8 {
		t.Fatalf("right PIN after failures: %d, %v", r, err)
	}
	wantStatus(t, e, true, 8)
	for i := 0; i < 7; i++ {
		e.CheckPIN(pinHash("0000"))
	}
	if _, err := e.CheckPIN(pinHash("0000")); !errors.Is(err, tpm.ErrPINBlocked) {
		t.Fatalf("8th wrong PIN: %v", err)
	}
	if _, err := e.CheckPIN(pinHash("1234")); !errors.Is(err, tpm.ErrPINBlocked) {
		t.Fatalf("right PIN when blocked: %v", err)
	}
	wantStatus(t, e, true, 0)
	// The refusal is the TPM's, not the engine's: the right PIN, sent
	// straight to the TPM, is refused too.
	if err := rawPINRead(sim, s.id.PINIndex, pinHash("1234")); err == nil {
		t.Fatal("the TPM accepted the right PIN on a blocked index")
	} else {
		t.Logf("TPM answer on a blocked index: %v", err)
	}
	// The TPM-wide dictionary-attack counter never moved (NoDA).
	tpmtest.AssertNoLockout(t, sim)
	// Reset removes the PIN.
	if _, err := e.Reset(); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e, false, 0)
	if err := e.SetPIN(pinHash("abcd")); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e, true, 8)
}

func TestChangePIN(t *testing.T) {
	e, s := pinEngine(t, tpmtest.Simulator(t))
	if _, err := e.ChangePIN(pinHash("1234"), pinHash("5678")); !errors.Is(err, tpm.ErrPINNotSet) {
		t.Fatalf("ChangePIN without PIN: %v", err)
	}
	e.SetPIN(pinHash("1234"))
	old := s.id.PINIndex
	e.CheckPIN(pinHash("0000"))
	if r, err := e.ChangePIN(pinHash("9999"), pinHash("5678")); !errors.Is(err, tpm.ErrWrongPIN) || r != 6 {
		t.Fatalf("ChangePIN with a wrong PIN: %d, %v", r, err)
	}
	if _, err := e.ChangePIN(pinHash("1234"), pinHash("5678")); err != nil {
		t.Fatal(err)
	}
	if s.id.PINIndex == old || s.id.PINPending != 0 {
		t.Fatalf("identity after change: %+v (old index 0x%x)", s.id, old)
	}
	wantStatus(t, e, true, 8)
	if _, err := e.CheckPIN(pinHash("1234")); !errors.Is(err, tpm.ErrWrongPIN) {
		t.Fatalf("old PIN after change: %v", err)
	}
	if _, err := e.CheckPIN(pinHash("5678")); err != nil {
		t.Fatalf("new PIN: %v", err)
	}
}

// A crash between defining a PIN index and committing it (the identity
// still names it pending) leaves no PIN and no index after the next start.
func TestPINIndexLeftPendingIsRemoved(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	e.SetPIN(pinHash("1234"))
	crashed := s.id
	crashed.PINPending, crashed.PINIndex = crashed.PINIndex, 0 // as if killed before the commit
	e.Close()
	s2 := &saved{}
	e2, id, err := tpm.New(sim, crashed, tpm.Options{Persist: s2.persist})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if id.PINPending != 0 || s2.id.PINPending != 0 {
		t.Fatalf("pending index kept: %+v", id)
	}
	wantStatus(t, e2, false, 0)
	if _, _, err := readNV(sim, crashed.PINPending); !errors.Is(err, tpm2.TPMRCHandle) {
		t.Fatalf("pending index still defined: %v", err)
	}
}

// An index that identity.json names but the TPM lacks fails closed.
func TestPINIndexLostFailsClosed(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	e.SetPIN(pinHash("1234"))
	e.Close()
	lost := s.id
	lost.PINIndex = 0x01abcdef
	e2, _, err := tpm.New(sim, lost, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if _, err := e2.CheckPIN(pinHash("1234")); !errors.Is(err, tpm.ErrPINLost) {
		t.Fatalf("CheckPIN on a lost index: %v", err)
	}
	if st, err := e2.PINStatus(); !errors.Is(err, tpm.ErrPINLost) || !st.Set || st.Retries != 0 {
		t.Fatalf("PINStatus on a lost index: %+v, %v", st, err)
	}
}

// Sessions flushed under the PIN check (seed 000) are replaced; the lost
// session is never counted as a wrong PIN.
func TestPINCheckSurvivesLostSessions(t *testing.T) {
	sim := tpmtest.Simulator(t)
	f := tpmtest.NewFaulty(sim)
	e, _ := pinEngine(t, f)
	if err := e.SetPIN(pinHash("1234")); err != nil {
		t.Fatal(err)
	}
	// The first NV_Read reads the count with owner auth; the second is
	// the PIN check.
	f.Add(tpmtest.Fault{Command: tpm2.TPMCCNVRead, Occurrence: 2, Inject: tpmtest.InjectLoseSessions})
	if r, err := e.CheckPIN(pinHash("1234")); err != nil || r != 8 {
		t.Fatalf("CheckPIN with a flushed session: %d, %v", r, err)
	}
	if f.Hits() == 0 {
		t.Fatal("fault never fired")
	}
	wantStatus(t, e, true, 8)
}

func readNV(t transport.TPM, idx uint32) (tpm2.TPM2BName, *tpm2.TPMSNVPublic, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(idx)}.Execute(t)
	if err != nil {
		return tpm2.TPM2BName{}, nil, err
	}
	pub, err := rsp.NVPublic.Contents()
	return rsp.NVName, pub, err
}

// rawPINRead authorises NV_Read on the PIN index with pin, bypassing the
// engine, as another program on the same TPM could.
func rawPINRead(t transport.TPM, idx uint32, pin []byte) error {
	name, _, err := readNV(t, idx)
	if err != nil {
		return err
	}
	_, err = tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Name: name, Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth([]byte(hex.EncodeToString(pin))))},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
		Size:       8,
	}.Execute(t)
	return err
}

// PIN hashes with zero bytes inside and at the end work like any other
// (go-tpm strips every zero byte of an authValue; pinAuth avoids them).
func TestPINHashWithZeroBytes(t *testing.T) {
	e, _ := pinEngine(t, tpmtest.Simulator(t))
	h := []byte{0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0}
	if err := e.SetPIN(h); err != nil {
		t.Fatal(err)
	}
	if r, err := e.CheckPIN(h); err != nil || r != 8 {
		t.Fatalf("CheckPIN: %d, %v", r, err)
	}
	other := append([]byte(nil), h...)
	other[15] = 1
	if _, err := e.CheckPIN(other); !errors.Is(err, tpm.ErrWrongPIN) {
		t.Fatalf("CheckPIN with a hash differing in its last byte: %v", err)
	}
}

// dying is a TPM connection that breaks after a number of commands, as
// the daemon's does when it is killed: the command in flight either
// reached the TPM whole or not at all.
type dying struct {
	next transport.TPM
	left int
}

var errKilled = errors.New("killed")

func (d *dying) Send(cmd []byte) ([]byte, error) {
	if d.left <= 0 {
		return nil, errKilled
	}
	d.left--
	return d.next.Send(cmd)
}

// TestPINCheckKilledAtEveryCommand kills a PIN check after each of its
// TPM commands in turn, wrong PIN and right PIN, and restarts the engine
// on the same TPM each time: the retries left never go up without the
// right PIN, and a killed wrong guess is never free (the TPM counted it
// in the command that checked it, or the check never happened).
func TestPINCheckKilledAtEveryCommand(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	if err := e.SetPIN(pinHash("1234")); err != nil {
		t.Fatal(err)
	}
	e.Close()
	id := s.id
	retries := func() int {
		t.Helper()
		e, _, err := tpm.New(sim, id, tpm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		st, err := e.PINStatus()
		if err != nil {
			t.Fatal(err)
		}
		return st.Retries
	}
	// How many commands does a whole check take (after start-up)?
	m := tpm.NewMeter(sim)
	e2, _, err := tpm.New(m, id, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	before := m.Snapshot()
	e2.CheckPIN(pinHash("0000"))
	total := m.Snapshot().Sub(before).Total()
	e2.CheckPIN(pinHash("1234"))
	e2.Close()
	if total < 3 {
		t.Fatalf("a PIN check took %d commands", total)
	}
	trials := 0
	for _, guess := range []string{"0000", "1234"} {
		for cut := 0; cut <= total+2; cut++ {
			start := retries()
			tpmtest.FlushAll(sim, tpm2.TPMHTHMACSession) // the dead process's sessions
			tpmtest.FlushAll(sim, tpm2.TPMHTPolicySession)
			d := &dying{next: sim, left: 1 << 30}
			e, _, err := tpm.New(d, id, tpm.Options{RetryBudget: 1})
			if err != nil {
				t.Fatal(err)
			}
			d.left = cut
			r, err := e.CheckPIN(pinHash(guess))
			d.left = 1 << 30
			e.Close()
			tpmtest.FlushAll(sim, tpm2.TPMHTTransient)
			after := retries()
			trials++
			switch {
			case guess == "0000" && after > start:
				t.Fatalf("wrong PIN killed after %d commands: retries %d -> %d", cut, start, after)
			case guess == "0000" && err == nil:
				t.Fatalf("wrong PIN accepted")
			case guess == "0000" && errors.Is(err, tpm.ErrWrongPIN) && after != start-1:
				t.Fatalf("wrong PIN reported (%d left) but retries %d -> %d", r, start, after)
			case guess == "1234" && err == nil && after != tpm.PINRetries:
				t.Fatalf("right PIN accepted but retries %d", after)
			}
			if after == 0 {
				t.Fatal("blocked during the trial")
			}
			if guess == "0000" && after < start {
				// Give the retries back with the right PIN, so the
				// next cut starts from 8.
				e, _, _ := tpm.New(sim, id, tpm.Options{})
				if _, err := e.CheckPIN(pinHash("1234")); err != nil {
					t.Fatal(err)
				}
				e.Close()
			}
		}
	}
	t.Logf("%d killed PIN checks (a whole check is %d TPM commands): retries never went up without the right PIN", trials, total)
}
