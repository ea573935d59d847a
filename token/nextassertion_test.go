package token_test

import (
	"bytes"
	"crypto/sha256"
	"path/filepath"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// TestGetNextAssertionWindowFromLastCall: the 30 s getNextAssertion
// window counts from the last getAssertion or getNextAssertion (CTAP 2.1
// section 6.3), so a platform that reads one credential every 20 s gets
// them all, and one that waits 31 s after any call gets NOT_ALLOWED.
func TestGetNextAssertionWindowFromLastCall(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Unix(1_800_000_000, 0)
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, Resident: store, Now: func() time.Time { return now }})
	defer a.Close()
	for i := range 4 {
		if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{3: map[string]any{"id": []byte{byte(i)}}, 7: map[string]bool{"rk": true}})); st != ctap2.OK {
			t.Fatal(st)
		}
	}
	cdh := sha256.Sum256([]byte("w"))
	if st, _ := call(t, a, ctap2.CmdGetAssertion, map[int]any{1: "example.org", 2: cdh[:]}); st != ctap2.OK {
		t.Fatal(st)
	}
	for i := range 2 {
		now = now.Add(20 * time.Second)
		if st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil); st != ctap2.OK {
			t.Fatalf("getNextAssertion %d, 20 s after the call before it (%d s after getAssertion): %v", i+1, 20*(i+1), st)
		}
	}
	now = now.Add(31 * time.Second)
	if st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil); st != ctap2.ErrNotAllowed {
		t.Fatalf("getNextAssertion 31 s after the last one: %v, want NOT_ALLOWED", st)
	}
}
