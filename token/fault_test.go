package token_test

import (
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// TestTPMFaultsAsTheClientSeesThem: a TPM that fails under a request gives
// the client 0x6F00 — never 0x6A80, which would tell it its key handle is
// unknown — and the next request succeeds once the fault clears. Faults
// the engine absorbs are invisible to the client.
func TestTPMFaultsAsTheClientSeesThem(t *testing.T) {
	cases := []struct {
		name  string
		fault tpmtest.Fault
		want  uint16
	}{
		// The engine reconnects, finds its primary still there, and runs
		// the operation again: the client never notices.
		{"connection lost during Load", tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, Inject: tpmtest.InjectClosed}, token.SWNoError},
		{"connection lost during Load, twice", tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, Repeat: 2, Inject: tpmtest.InjectClosed}, token.SWUnknown},
		{"TPM failure in Sign", tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, RC: tpm2.TPMRCFailure}, token.SWUnknown},
		{"session lost in Sign", tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, Inject: tpmtest.InjectLoseSessions}, token.SWNoError},
		{"RETRY in Sign", tpmtest.Fault{Command: tpm2.TPMCCSign, Occurrence: 1, Repeat: 2, RC: tpm2.TPMRCRetry}, token.SWNoError},
		{"OBJECT_MEMORY in Load", tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 1, Repeat: 2, RC: tpm2.TPMRCObjectMemory}, token.SWNoError},
		{"NV_RATE on the counter", tpmtest.Fault{Command: tpm2.TPMCCNVIncrement, Occurrence: 1, Repeat: 2, RC: tpm2.TPMRCNVRate}, token.SWNoError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			faulty := tpmtest.NewFaulty(tpmtest.Simulator(t))
			e := tpmtest.Engine(t, faulty, tpm.Options{CounterBlock: 1})
			a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}})
			defer a.Close()
			app := sha256.Sum256([]byte("https://example.org"))
			r := register(t, a, app, sha256.Sum256([]byte("r")))
			faulty.Add(c.fault)
			chal := sha256.Sum256([]byte("c"))
			if got := sw(authenticate(a, 0x03, app, chal, r.handle, false)); got != c.want {
				t.Fatalf("SW %04X, want %04X", got, c.want)
			}
			faulty.Clear()
			chal2 := sha256.Sum256([]byte("c2"))
			verifyAssertion(t, r, app, chal2, authenticate(a, 0x03, app, chal2, r.handle, false), 1)
		})
	}
}

func TestTPMFaultDuringRegister(t *testing.T) {
	faulty := tpmtest.NewFaulty(tpmtest.Simulator(t))
	e := tpmtest.Engine(t, faulty, tpm.Options{})
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}})
	defer a.Close()
	app, chal := sha256.Sum256([]byte("https://example.org")), sha256.Sum256([]byte("r"))
	faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCCreateLoaded, Occurrence: 1, RC: tpm2.TPMRCFailure})
	if got := sw(a.HandleAPDU(t.Context(), apdu(0x01, 0x03, append(chal[:], app[:]...), false))); got != token.SWUnknown {
		t.Fatalf("register with a failing TPM: SW %04X, want 6F00", got)
	}
	faulty.Clear()
	register(t, a, app, chal)
}
