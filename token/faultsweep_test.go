package token_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// sweepRig is a token with a PIN, a discoverable credential and a U2F
// registration, over a fault injector on the simulator.
type sweepRig struct {
	t      *testing.T
	sim    transportCloser
	faulty *tpmtest.Faulty
	e      *tpm.Engine
	a      *token.Authenticator
	p      *platform
	u2f    registration
	cred   []byte
	n      int    // requests made, for fresh challenges
	last   uint32 // highest signature counter seen
}

type transportCloser interface {
	Send([]byte) ([]byte, error)
	Close() error
}

var sweepApp = sha256.Sum256([]byte("https://example.org"))

func newSweepRig(t *testing.T) *sweepRig {
	t.Helper()
	r := &sweepRig{t: t, sim: tpmtest.Simulator(t)}
	r.faulty = tpmtest.NewFaulty(r.sim)
	r.e = tpmtest.Engine(t, r.faulty, tpm.Options{RetryBudget: 200_000_000})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	r.a = token.New(token.Config{Keys: token.TPMKeys{Engine: r.e}, Presence: presence.Always{}, Resident: store,
		PIN: token.TPMPIN{Engine: r.e}, Secrets: token.TPMKeys{Engine: r.e},
		Reset: func() error {
			if _, err := r.e.Reset(); err != nil {
				return err
			}
			secret, _, err := r.e.Seal()
			if err != nil {
				return err
			}
			return store.Reset(secret)
		}})
	t.Cleanup(r.a.Close)
	r.u2f = register(t, r.a, sweepApp, sha256.Sum256([]byte("reg")))
	r.p = newPlatform(t, r.a, 2)
	if st := r.p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	r.token(ctap2.PermMakeCredential | ctap2.PermGetAssertion)
	st, body := r.makeCredential()
	if st != ctap2.OK {
		t.Fatalf("makeCredential: %v", st)
	}
	var mc ctap2.MakeCredentialResponse
	cbor.Unmarshal(body, &mc)
	n := int(binary.BigEndian.Uint16(mc.AuthData[53:55]))
	r.cred = mc.AuthData[55 : 55+n]
	// A token serves one operation with presence (CTAP 2.1 section
	// 6.5.2.1): a fresh one for each, as platforms do.
	r.token(ctap2.PermMakeCredential | ctap2.PermGetAssertion)
	if st := r.getAssertion(); st != ctap2.OK {
		t.Fatalf("getAssertion: %v", st)
	}
	r.token(ctap2.PermMakeCredential | ctap2.PermGetAssertion)
	return r
}

func (r *sweepRig) token(perms uint64) ctap2.Status {
	return r.p.getToken("1234", perms, "example.org")
}

func (r *sweepRig) cdh() []byte {
	r.n++
	h := sha256.Sum256([]byte(fmt.Sprint("request ", r.n)))
	return h[:]
}

func (r *sweepRig) makeCredential() (ctap2.Status, []byte) {
	cdh := r.cdh()
	return call(r.t, r.a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{1: cdh,
		3: map[string]any{"id": []byte{byte(r.n)}, "name": "u"}, 6: map[string]any{"hmac-secret": true},
		7: map[string]bool{"rk": true}, 8: r.p.proto.Authenticate(r.p.token, cdh), 9: 2}))
}

func (r *sweepRig) getAssertion() ctap2.Status {
	cdh := r.cdh()
	st, body := call(r.t, r.a, ctap2.CmdGetAssertion, map[int]any{1: "example.org", 2: cdh,
		3: []map[string]any{{"type": "public-key", "id": r.cred}}, 6: r.p.proto.Authenticate(r.p.token, cdh), 7: 2})
	if st == ctap2.OK {
		var rsp ctap2.GetAssertionResponse
		cbor.Unmarshal(body, &rsp)
		r.counter(binary.BigEndian.Uint32(rsp.AuthData[33:37]))
	}
	return st
}

func (r *sweepRig) authenticate() uint16 {
	var chal [32]byte
	copy(chal[:], r.cdh())
	rsp := authenticate(r.a, 0x03, sweepApp, chal, r.u2f.handle, false)
	if sw(rsp) == token.SWNoError {
		r.counter(binary.BigEndian.Uint32(rsp[1:5]))
	}
	return sw(rsp)
}

// counter checks the signature counter only ever grows.
func (r *sweepRig) counter(c uint32) {
	r.t.Helper()
	if c <= r.last && r.last != 0 {
		r.t.Fatalf("signature counter %d after %d", c, r.last)
	}
	r.last = c
}

// sweepOp is one token operation as the client sees it: ok, or a status.
type sweepOp struct {
	name string
	run  func(r *sweepRig) (ok bool, status string)
	// allowed are the failure statuses a TPM fault may produce: never one
	// that blames the client's credential or PIN.
	allowed map[string]bool
}

var (
	ctapFault = map[string]bool{ctap2.ErrOther.Error(): true}
	u2fFault  = map[string]bool{fmt.Sprintf("%04X", token.SWUnknown): true}
)

func ctapResult(st ctap2.Status) (bool, string) { return st == ctap2.OK, st.Error() }

var sweepOps = []sweepOp{
	{"U2F register", func(r *sweepRig) (bool, string) {
		var chal [32]byte
		copy(chal[:], r.cdh())
		s := sw(r.a.HandleAPDU(r.t.Context(), apdu(0x01, 0x03, append(chal[:], sweepApp[:]...), false)))
		return s == token.SWNoError, fmt.Sprintf("%04X", s)
	}, u2fFault},
	{"U2F authenticate", func(r *sweepRig) (bool, string) {
		s := r.authenticate()
		return s == token.SWNoError, fmt.Sprintf("%04X", s)
	}, u2fFault},
	{"makeCredential (rk, PIN, hmac-secret)", func(r *sweepRig) (bool, string) {
		st, _ := r.makeCredential()
		return ctapResult(st)
	}, ctapFault},
	{"getAssertion (PIN)", func(r *sweepRig) (bool, string) { return ctapResult(r.getAssertion()) }, ctapFault},
	{"clientPIN getPinUvAuthToken", func(r *sweepRig) (bool, string) {
		return ctapResult(r.token(ctap2.PermMakeCredential | ctap2.PermGetAssertion))
	}, ctapFault},
	{"reset", func(r *sweepRig) (bool, string) {
		r.a.PowerCycle() // opens the 10 s window
		st, _ := call(r.t, r.a, ctap2.CmdReset, nil)
		return ctapResult(st)
	}, ctapFault},
}

// TestTPMFaultAtEveryCommand runs every token operation with a fault at
// each of its TPM commands in turn — a TPM failure response, and a lost
// connection — on a fresh token each time. The client gets a precise
// error (never one that blames its credential or PIN), nothing panics,
// the PIN retries do not move, the TPM's dictionary-attack counter stays
// at 0, the signature counter never repeats, and the same operation
// succeeds once the fault is cleared.
func TestTPMFaultAtEveryCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("the sweep makes a few hundred tokens")
	}
	faults := []struct {
		name  string
		fault tpmtest.Fault
	}{
		{"TPM_RC_FAILURE", tpmtest.Fault{Command: tpmtest.AnyCommand, RC: tpm2.TPMRCFailure}},
		{"connection lost", tpmtest.Fault{Command: tpmtest.AnyCommand, Inject: tpmtest.InjectClosed}},
	}
	total := 0
	for _, op := range sweepOps {
		// How many TPM commands does the operation take?
		var n int
		t.Run(op.name+"/count", func(t *testing.T) {
			r := newSweepRig(t)
			r.faulty.Sent()
			if ok, st := op.run(r); !ok {
				t.Fatalf("%s without faults: %s", op.name, st)
			}
			n = len(r.faulty.Sent())
		})
		for _, f := range faults {
			for i := 1; i <= n; i++ {
				t.Run(fmt.Sprintf("%s/%s at command %d of %d", op.name, f.name, i, n), func(t *testing.T) {
					r := newSweepRig(t)
					r.faulty.Sent()
					fault := f.fault
					fault.Occurrence = i
					r.faulty.Add(fault)
					ok, st := op.run(r)
					hit := r.faulty.Hits() > 0
					sent := r.faulty.Sent()
					r.faulty.Clear()
					if !ok && !op.allowed[st] {
						t.Fatalf("fault at %v: the client got %s", sent[min(i, len(sent))-1], st)
					}
					if !hit {
						t.Fatalf("the fault never fired (%d commands sent)", len(sent))
					}
					if st, err := r.e.PINStatus(); op.name != "reset" && (err != nil || st.Retries != tpm.PINRetries) {
						t.Fatalf("PIN retries after the fault: %+v, %v", st, err)
					}
					tpmtest.AssertNoLockout(t, r.sim)
					if op.name == "reset" {
						if ok, st := op.run(r); !ok {
							t.Fatalf("reset after the fault cleared: %s", st)
						}
						return
					}
					if op.name == "getAssertion (PIN)" || op.name == "makeCredential (rk, PIN, hmac-secret)" {
						r.token(ctap2.PermMakeCredential | ctap2.PermGetAssertion) // a failure may have dropped it, a success used it up
					}
					if ok, st := op.run(r); !ok {
						t.Fatalf("after the fault cleared: %s", st)
					}
					// Everything else works too.
					if s := r.authenticate(); s != token.SWNoError {
						t.Fatalf("U2F authenticate after the fault: %04X", s)
					}
				})
				total++
			}
		}
	}
	t.Logf("%d faulted operations", total)
}
