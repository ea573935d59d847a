package token_test

import (
	"testing"

	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// TestGetPINRetriesBeforeAPIN: without a PIN, getPINRetries is
// PIN_NOT_SET, not 0 retries (which clients read as blocked); once a PIN
// is set, 8.
func TestGetPINRetriesBeforeAPIN(t *testing.T) {
	a, _ := pinToken(t)
	for _, v := range []int{1, 2} {
		if st, _ := call(t, a, ctap2.CmdClientPIN, map[int]any{1: v, 2: ctap2.PINGetRetries}); st != ctap2.ErrPINNotSet {
			t.Fatalf("getPINRetries (protocol %d) before a PIN: %v, want PIN_NOT_SET", v, st)
		}
	}
	if st := newPlatform(t, a, 2).setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	if r, pc := retries(t, a); r != 8 || pc {
		t.Fatalf("getPINRetries after setPIN: %d, power cycle %v", r, pc)
	}
}
