package tpm_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/token"
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

// How a test writes the index it substituted.
type nvWriter int

const (
	writeNone      nvWriter = iota
	writeAuth               // with the index's authValue
	writeOwner              // with owner authorization
	writePolicy             // with a policy session: PolicyCommandCode(NV_Write) only
	writePINPolicy          // with our PIN index's policy: PolicyCommandCode(NV_Write) ∧ PolicyAuthValue
)

// substituteNV plays someone with owner authorization (empty, as on most
// desktops: every member of the tss group): it undefines the index at
// pub.NVIndex, defines pub there instead with authValue auth, and writes
// data to it the way w says.
func substituteNV(t *testing.T, tr transport.TPM, pub tpm2.TPMSNVPublic, auth []byte, w nvWriter, data []byte) {
	t.Helper()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	name, _, err := readNV(tr, uint32(pub.NVIndex))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: pub.NVIndex, Name: name}}).Execute(tr); err != nil {
		t.Fatalf("undefine: %v", err)
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, Auth: tpm2.TPM2BAuth{Buffer: auth}, PublicInfo: tpm2.New2B(pub)}).Execute(tr); err != nil {
		t.Fatalf("define the substitute: %v", err)
	}
	if w == writeNone {
		return
	}
	if name, _, err = readNV(tr, uint32(pub.NVIndex)); err != nil {
		t.Fatal(err)
	}
	nv := tpm2.NamedHandle{Handle: pub.NVIndex, Name: name}
	authHandle := tpm2.AuthHandle{Handle: pub.NVIndex, Name: name, Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(auth))}
	switch w {
	case writeOwner:
		authHandle = owner
	case writePolicy, writePINPolicy:
		var opts []tpm2.AuthOption
		if w == writePINPolicy {
			opts = append(opts, tpm2.Auth(auth))
		}
		sess, closeSess, err := tpm2.PolicySession(tr, tpm2.TPMAlgSHA256, 16, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer closeSess()
		if _, err := (tpm2.PolicyCommandCode{PolicySession: sess.Handle(), Code: tpm2.TPMCCNVWrite}).Execute(tr); err != nil {
			t.Fatal(err)
		}
		if w == writePINPolicy {
			if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(tr); err != nil {
				t.Fatal(err)
			}
		}
		authHandle.Auth = sess
	}
	if _, err := (tpm2.NVWrite{AuthHandle: authHandle, NVIndex: nv, Data: tpm2.TPM2BMaxNVBuffer{Buffer: data}}).Execute(tr); err != nil {
		t.Fatalf("write the substitute: %v", err)
	}
}

// nvWritePolicyWithoutPIN is PolicyCommandCode(NV_Write): the policy of
// a substitute that anyone may write.
func nvWritePolicyWithoutPIN(t *testing.T) []byte {
	t.Helper()
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := (tpm2.PolicyCommandCode{Code: tpm2.TPMCCNVWrite}).Update(calc); err != nil {
		t.Fatal(err)
	}
	return calc.Hash().Digest
}

// TestPINIndexSubstituteRefused replaces the PIN index, with owner
// authorization, by an index whose authValue the attacker chose: an
// ordinary index, and PIN-fail indexes with other attributes or another
// policy. The engine checks the public area NV_ReadPublic returns against
// the one it defines, so it refuses the substitute's PIN (and the real
// one) with ErrNVIndexForeign, reports the PIN as set with no retries,
// and never hands out a token (the token maps it to PIN_BLOCKED).
func TestPINIndexSubstituteRefused(t *testing.T) {
	counter := []byte{0, 0, 0, 0, 0, 0, 0, tpm.PINRetries} // {pinCount 0, pinLimit 8}
	ours, err := tpm.PINPublicForTest(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []struct {
		name   string
		attrs  tpm2.TPMANV
		policy []byte
		write  nvWriter
		data   []byte
	}{
		{"ordinary index", tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthRead: true, AuthWrite: true, OwnerRead: true, NoDA: true}, nil, writeAuth, counter},
		{"PIN-fail index the owner may write", tpm2.TPMANV{NT: tpm2.TPMNTPinFail, AuthRead: true, OwnerRead: true, OwnerWrite: true, NoDA: true}, nil, writeOwner, counter},
		{"PIN-fail index with a policy that needs no PIN", ours.Attributes, nvWritePolicyWithoutPIN(t), writePolicy, counter},
		{"PIN-pass index", tpm2.TPMANV{NT: tpm2.TPMNTPinPass, AuthRead: true, OwnerRead: true, OwnerWrite: true, NoDA: true}, nil, writeOwner, []byte{0, 0, 0, 0, 0, 0, 0, 100}},
	} {
		for _, b := range tpmtest.Backends {
			t.Run(b.Name+"/"+sub.name, func(t *testing.T) { testPINIndexSubstitute(t, b.Open(t), sub.attrs, sub.policy, sub.write, sub.data) })
		}
	}
}

func testPINIndexSubstitute(t *testing.T, tr transport.TPM, attrs tpm2.TPMANV, policy []byte, write nvWriter, data []byte) {
	e, s := pinEngine(t, tr)
	if err := e.SetPIN(pinHash("the real PIN")); err != nil {
		t.Fatal(err)
	}
	idx := s.id.PINIndex
	substituteNV(t, tr, tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(idx), NameAlg: tpm2.TPMAlgSHA256, Attributes: attrs,
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy}, DataSize: 8},
		[]byte(hex.EncodeToString(pinHash("the attacker's PIN"))), write, data)
	// The substitute does accept the attacker's PIN, straight
	// to the TPM: only the engine's check stands in the way.
	if err := rawPINRead(tr, idx, pinHash("the attacker's PIN")); err != nil {
		t.Fatalf("the substitute refuses its own PIN: %v", err)
	}
	for _, guess := range []string{"the attacker's PIN", "the real PIN"} {
		if r, err := e.CheckPIN(pinHash(guess)); !errors.Is(err, tpm.ErrNVIndexForeign) || r != 0 {
			t.Fatalf("CheckPIN(%s) on a substituted index: %d, %v", guess, r, err)
		}
		if _, err := (token.TPMPIN{Engine: e}).CheckPIN(pinHash(guess)); !errors.Is(err, token.ErrPINBlocked) {
			t.Fatalf("the token's CheckPIN(%s): %v, want ErrPINBlocked", guess, err)
		}
	}
	if _, err := e.ChangePIN(pinHash("the attacker's PIN"), pinHash("mine now")); !errors.Is(err, tpm.ErrNVIndexForeign) {
		t.Fatalf("ChangePIN on a substituted index: %v", err)
	}
	if st, err := e.PINStatus(); !errors.Is(err, tpm.ErrNVIndexForeign) || !st.Set || st.Retries != 0 {
		t.Fatalf("PINStatus on a substituted index: %+v, %v", st, err)
	}
	if !strings.Contains(fmt.Sprint(e.CheckPIN(pinHash("x"))), fmt.Sprintf("0x%08x", idx)) {
		t.Error("the error does not name the index")
	}
	// A restart does not help the substitute either.
	e.Close()
	e2, _, err := tpm.New(tr, s.id, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if _, err := e2.CheckPIN(pinHash("the attacker's PIN")); !errors.Is(err, tpm.ErrNVIndexForeign) {
		t.Fatalf("CheckPIN after restart: %v", err)
	}
}

// TestPINIndexIdenticalRedefinitionPassesTheCheck shows the limit of the
// check, as docs/threat-model.md states it: the Name of an NV index
// covers its public area, not its authValue, so an index undefined with
// owner authorization and defined again exactly as we define it, with an
// authValue of the attacker's choosing and armed through the same policy,
// has the very same public area and Name, and the engine cannot tell it
// from ours.
func TestPINIndexIdenticalRedefinitionPassesTheCheck(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, s := pinEngine(t, sim)
	if err := e.SetPIN(pinHash("the real PIN")); err != nil {
		t.Fatal(err)
	}
	before, pub, err := readNV(sim, s.id.PINIndex)
	if err != nil {
		t.Fatal(err)
	}
	unwritten := *pub
	unwritten.Attributes.Written = false
	substituteNV(t, sim, unwritten, []byte(hex.EncodeToString(pinHash("the attacker's PIN"))), writePINPolicy, []byte{0, 0, 0, 0, 0, 0, 0, tpm.PINRetries})
	after, pub2, err := readNV(sim, s.id.PINIndex)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before.Buffer, after.Buffer) || !bytes.Equal(tpm2.Marshal(*pub), tpm2.Marshal(*pub2)) {
		t.Fatalf("an identical re-definition changed the Name: %x -> %x", before.Buffer, after.Buffer)
	}
	if _, err := e.PINStatus(); err != nil {
		t.Fatalf("PINStatus: %v (if the engine can now tell, update docs/threat-model.md)", err)
	}
}

// TestOwnerIndexCannotBePolicyDelete checks on the simulator what TPM 2.0
// Part 3, TPM2_NV_DefineSpace says: TPMA_NV_POLICY_DELETE needs
// TPMA_NV_PLATFORMCREATE, so an index defined with owner authorization
// cannot be made undeletable by owner authorization.
func TestOwnerIndexCannotBePolicyDelete(t *testing.T) {
	for _, b := range tpmtest.Backends {
		t.Run(b.Name, func(t *testing.T) { testOwnerIndexCannotBePolicyDelete(t, b.Open(t)) })
	}
}

func testOwnerIndexCannotBePolicyDelete(t *testing.T, sim transport.TPM) {
	pub, err := tpm.PINPublicForTest(0x01800123)
	if err != nil {
		t.Fatal(err)
	}
	pub.Attributes.PolicyDelete = true
	_, err = tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		Auth:       tpm2.TPM2BAuth{Buffer: []byte("x")},
		PublicInfo: tpm2.New2B(pub),
	}.Execute(sim)
	if !errors.Is(err, tpm2.TPMRCAttributes) {
		t.Fatalf("owner NV_DefineSpace with POLICY_DELETE: %v, want TPM_RC_ATTRIBUTES", err)
	}
}

// TestCounterIndexSubstituteRefused replaces the signature counter's
// index, with owner authorization, by an ordinary index (which anyone
// knowing its authValue can set to any value, so the counter could go
// back) and by a counter with other attributes: the running engine
// refuses to take a block from it and a new engine refuses to start,
// both with ErrNVIndexForeign.
func TestCounterIndexSubstituteRefused(t *testing.T) {
	for _, sub := range []struct {
		name  string
		attrs tpm2.TPMANV
		write nvWriter
		data  []byte
	}{
		{"ordinary index", tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthRead: true, AuthWrite: true, NoDA: true}, writeAuth, []byte{0, 0, 0, 0, 0, 0, 0, 1}},
		{"counter readable and writable by the owner", tpm2.TPMANV{NT: tpm2.TPMNTCounter, AuthRead: true, AuthWrite: true, OwnerRead: true, OwnerWrite: true, NoDA: true}, writeNone, nil},
	} {
		t.Run(sub.name, func(t *testing.T) {
			sim := tpmtest.Simulator(t)
			e, id, err := tpm.New(sim, tpm.NewIdentity(), tpm.Options{CounterBlock: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if _, err := e.NextCounter(); err != nil {
				t.Fatal(err)
			}
			substituteNV(t, sim, tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(id.CounterIndex), NameAlg: tpm2.TPMAlgSHA256, Attributes: sub.attrs, DataSize: 8}, nil, sub.write, sub.data)
			if _, err := e.NextCounter(); !errors.Is(err, tpm.ErrNVIndexForeign) {
				t.Fatalf("NextCounter on a substituted counter: %v", err)
			}
			if e2, _, err := tpm.New(sim, id, tpm.Options{}); !errors.Is(err, tpm.ErrNVIndexForeign) {
				if e2 != nil {
					e2.Close()
				}
				t.Fatalf("New on a substituted counter: %v", err)
			}
		})
	}
}

// flakyDisk is identity.json on a disk that refuses writes: the n-th
// write (1-based) fails, and with sticky every write after it too.
type flakyDisk struct {
	saved
	n, writes int
	sticky    bool
}

var errDiskFull = errors.New("injected: no space left on device")

func (d *flakyDisk) persist(id tpm.Identity) error {
	d.writes++
	if d.n > 0 && (d.writes == d.n || d.sticky && d.writes > d.n) {
		return errDiskFull
	}
	d.id = id
	return nil
}

// pinIndexes lists the PIN-fail indexes defined on the TPM.
func pinIndexes(t *testing.T, tr transport.TPM) []uint32 {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTNVIndex) << 24, PropertyCount: 64}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	handles, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, h := range handles.Handle {
		if _, pub, err := readNV(tr, uint32(h)); err == nil && pub.Attributes.NT == tpm2.TPMNTPinFail {
			out = append(out, uint32(h))
		}
	}
	return out
}

// TestPINWriteFailureRollsBack fails each write of identity.json that a
// PIN set and a PIN change make, once or from then on (a full disk), and
// checks that the client gets an error exactly when the PIN did not
// change, that the engine's identity is what is on disk, that the TPM
// holds no PIN index the disk does not name, and that after a restart
// the PIN is wholly the old one or wholly the new one.
func TestPINWriteFailureRollsBack(t *testing.T) {
	for _, op := range []string{"set", "change"} {
		for _, sticky := range []bool{false, true} {
			for n := 1; n <= 4; n++ {
				name := fmt.Sprintf("%s, write %d fails", op, n)
				if sticky {
					name += " and every one after"
				}
				t.Run(name, func(t *testing.T) { testPINWriteFailure(t, op, n, sticky) })
			}
		}
	}
}

func testPINWriteFailure(t *testing.T, op string, n int, sticky bool) {
	sim := tpmtest.Simulator(t)
	d := &flakyDisk{}
	e, id, err := tpm.New(sim, tpm.NewIdentity(), tpm.Options{Persist: d.persist})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d.id = id
	oldPIN, newPIN := "", "the new PIN"
	if op == "change" {
		oldPIN = "the old PIN"
		if err := e.SetPIN(pinHash(oldPIN)); err != nil {
			t.Fatal(err)
		}
	}
	d.n, d.sticky = d.writes+n, sticky
	if op == "set" {
		err = e.SetPIN(pinHash(newPIN))
	} else {
		_, err = e.ChangePIN(pinHash(oldPIN), pinHash(newPIN))
	}
	changed := err == nil
	if err != nil && !errors.Is(err, errDiskFull) {
		t.Fatalf("%s: %v", op, err)
	}
	if got := e.Identity(); !reflect.DeepEqual(got, d.id) {
		t.Fatalf("memory and disk disagree after %s (err %v):\nmemory %+v\ndisk   %+v", op, err, got, d.id)
	}
	for _, idx := range pinIndexes(t, sim) {
		if idx != d.id.PINIndex && idx != d.id.PINPending {
			t.Fatalf("PIN index 0x%08x is on the TPM but not on disk (%+v)", idx, d.id)
		}
	}
	want, other := oldPIN, newPIN
	if changed {
		want, other = newPIN, oldPIN
	}
	check := func(e *tpm.Engine) {
		t.Helper()
		st, err := e.PINStatus()
		if err != nil || st.Set != (want != "") {
			t.Fatalf("PINStatus %+v, %v; want set=%v", st, err, want != "")
		}
		if want == "" {
			return
		}
		if _, err := e.CheckPIN(pinHash(want)); err != nil {
			t.Fatalf("the PIN in force (%q) is refused: %v", want, err)
		}
		if other != "" {
			if _, err := e.CheckPIN(pinHash(other)); !errors.Is(err, tpm.ErrWrongPIN) {
				t.Fatalf("the other PIN (%q): %v", other, err)
			}
			if _, err := e.CheckPIN(pinHash(want)); err != nil { // give the retry back
				t.Fatal(err)
			}
		}
	}
	d.n = 0 // the disk works again
	check(e)
	e.Close()
	// The next start tidies what the failed writes left.
	e2, id2, err := tpm.New(sim, d.id, tpm.Options{Persist: d.persist})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	check(e2)
	if got := pinIndexes(t, sim); (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || got[0] != id2.PINIndex)) {
		t.Fatalf("PIN indexes after restart %x, identity %+v", got, id2)
	}
}

// TestCounterIndexTamperingOnlyMovesItForward plays another member of
// the tss group against the signature counter's index, whose authValue is
// empty: incrementing it behind the engine's back, and undefining it. The
// counter only jumps forward: the increments skip blocks, and the index
// the next start defines again begins above every value handed out
// (a TPM starts a new counter at the highest value any counter had).
func TestCounterIndexTamperingOnlyMovesItForward(t *testing.T) {
	for _, b := range tpmtest.Backends {
		t.Run(b.Name, func(t *testing.T) {
			tr := b.Open(t)
			e, id, err := tpm.New(tr, tpm.NewIdentity(), tpm.Options{CounterBlock: 4})
			if err != nil {
				t.Fatal(err)
			}
			last, err := e.NextCounter()
			if err != nil {
				t.Fatal(err)
			}
			next := func(e *tpm.Engine) {
				t.Helper()
				for range 5 { // more than a block: takes a new one from the TPM
					v, err := e.NextCounter()
					if err != nil {
						t.Fatal(err)
					}
					if v <= last {
						t.Fatalf("counter went from %d to %d", last, v)
					}
					last = v
				}
			}
			idx := tpm2.TPMHandle(id.CounterIndex)
			for range 3 {
				name, _, err := readNV(tr, id.CounterIndex)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := (tpm2.NVIncrement{
					AuthHandle: tpm2.AuthHandle{Handle: idx, Name: name, Auth: tpm2.PasswordAuth(nil)},
					NVIndex:    tpm2.NamedHandle{Handle: idx, Name: name},
				}).Execute(tr); err != nil {
					t.Fatalf("another process's NV_Increment: %v", err)
				}
			}
			next(e)
			e.Close()
			name, _, err := readNV(tr, id.CounterIndex)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := (tpm2.NVUndefineSpace{
				AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
				NVIndex:    tpm2.NamedHandle{Handle: idx, Name: name},
			}).Execute(tr); err != nil {
				t.Fatal(err)
			}
			e2, _, err := tpm.New(tr, id, tpm.Options{CounterBlock: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer e2.Close()
			next(e2)
		})
	}
}
