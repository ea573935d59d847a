package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// TestCheckPINSharesThePowerCycleCount: a PIN checked outside CTAP (the
// control socket) counts toward the same three-in-a-row limit as
// clientPIN: after three wrong ones nothing is checked, CTAP's
// getPINRetries says a power cycle is needed, and only a re-plug opens a
// new window.
func TestCheckPINSharesThePowerCycleCount(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	right := sha256.Sum256([]byte("1234"))
	wrong := sha256.Sum256([]byte("9999"))
	store := &memPIN{hash: right[:16], retries: 8}
	a := New(Config{PIN: store, Now: func() time.Time { return now }})
	ctx := context.Background()
	for i := range 3 {
		if n := a.WrongPINsInARow(); n != i {
			t.Fatalf("WrongPINsInARow = %d after %d wrong PINs", n, i)
		}
		if r, err := a.CheckPIN(ctx, wrong[:16]); !errors.Is(err, ErrWrongPIN) || r != 7-i {
			t.Fatalf("wrong PIN %d: %d, %v", i+1, r, err)
		}
		now = now.Add(3 * time.Second) // past the delay after a failure
	}
	if n := a.WrongPINsInARow(); n != 3 {
		t.Fatalf("WrongPINsInARow = %d after 3 wrong PINs", n)
	}
	if _, err := a.CheckPIN(ctx, right[:16]); !errors.Is(err, ErrPINAuthBlocked) || store.retries != 5 {
		t.Fatalf("the right PIN while auth-blocked: %v, %d retries in the store", err, store.retries)
	}
	req, _ := ctap2.Marshal(map[int]any{1: 2, 2: ctap2.PINGetRetries})
	rsp := a.HandleCBOR(ctx, append([]byte{ctap2.CmdClientPIN}, req...), func(byte) {})
	var r ctap2.ClientPINResponse
	if rsp[0] != 0 || cbor.Unmarshal(rsp[1:], &r) != nil || r.PowerCycleState == nil || !*r.PowerCycleState {
		t.Fatalf("getPINRetries after 3 wrong PINs outside CTAP: %x", rsp)
	}
	a.PowerCycle()
	if n := a.WrongPINsInARow(); n != 0 {
		t.Fatalf("WrongPINsInARow = %d after a re-plug", n)
	}
	if r, err := a.CheckPIN(ctx, right[:16]); err != nil || r != 8 {
		t.Fatalf("the right PIN after a re-plug: %d, %v", r, err)
	}
}
