package interop

import (
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// clientPIN sends one authenticatorClientPIN command.
func clientPIN(ctx context.Context, c *ctaphid.Client, params map[int]any) (ctap2.Status, *ctap2.ClientPINResponse, error) {
	b, err := ctap2.Marshal(params)
	if err != nil {
		return 0, nil, err
	}
	rsp, err := c.Call(ctx, ctaphid.CmdCBOR, append([]byte{ctap2.CmdClientPIN}, b...))
	if err != nil || len(rsp) == 0 {
		return 0, nil, err
	}
	var out ctap2.ClientPINResponse
	if rsp[0] == 0 && len(rsp) > 1 {
		if err := cbor.Unmarshal(rsp[1:], &out); err != nil {
			return 0, nil, err
		}
	}
	return ctap2.Status(rsp[0]), &out, nil
}

// pinCommand builds setPIN (newPIN) or getPinUvAuthTokenUsingPinWithPermissions
// (tryPIN) with a fresh key agreement, protocol 2.
func pinCommand(ctx context.Context, c *ctaphid.Client, setPIN bool, p string) (ctap2.Status, error) {
	proto, _ := pin.ProtocolByVersion(2)
	st, rsp, err := clientPIN(ctx, c, map[int]any{1: 2, 2: ctap2.PINGetKeyAgreement})
	if err != nil || st != ctap2.OK {
		return st, err
	}
	ours, _ := pin.NewKeyAgreement()
	shared, err := ours.SharedSecret(proto, rsp.KeyAgreement.X, rsp.KeyAgreement.Y)
	if err != nil {
		return 0, err
	}
	x, y := ours.PublicXY()
	key := map[int]any{1: 2, 3: -25, -1: 1, -2: x, -3: y}
	if setPIN {
		padded := make([]byte, 64)
		copy(padded, p)
		enc, _ := proto.Encrypt(shared, padded)
		st, _, err := clientPIN(ctx, c, map[int]any{1: 2, 2: ctap2.PINSet, 3: key, 4: proto.Authenticate(shared, enc), 5: enc})
		return st, err
	}
	h := sha256.Sum256([]byte(p))
	enc, _ := proto.Encrypt(shared, h[:16])
	st, _, err = clientPIN(ctx, c, map[int]any{1: 2, 2: ctap2.PINGetTokenUsingPINWithPerms, 3: key, 6: enc, 9: ctap2.PermGetAssertion, 10: "example.com"})
	return st, err
}

func pinRetries(t *testing.T, ctx context.Context, c *ctaphid.Client) uint64 {
	t.Helper()
	st, rsp, err := clientPIN(ctx, c, map[int]any{1: 2, 2: ctap2.PINGetRetries})
	if err != nil || st != ctap2.OK || rsp.PinRetries == nil {
		t.Fatalf("getPINRetries: %v %v", st, err)
	}
	return *rsp.PinRetries
}

// TestPINRetriesSurviveSIGKILL kills the daemon (on swtpm) with SIGKILL at
// random points of wrong-PIN attempts, many times. After every restart
// the retries left, read from the TPM, never went up: a killed guess is
// never free. The right PIN gives them back when they run low.
func TestPINRetriesSurviveSIGKILL(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	addr, stop, _ := startDaemonIn(t, state, "--tpm", spec)
	if st, err := pinCommand(ctx, dial(t, ctx, addr), true, "1234"); err != nil || st != ctap2.OK {
		t.Fatalf("setPIN: %v %v", st, err)
	}
	stop()
	trials := trials(25)
	last := uint64(pin.MaxRetries)
	counted, killed := 0, 0
	for i := range trials {
		addr, _, kill := startDaemonIn(t, state, "--tpm", spec)
		c := dial(t, ctx, addr)
		if r := pinRetries(t, ctx, c); r > last {
			t.Fatalf("trial %d: retries went up from %d to %d without the right PIN", i, last, r)
		} else {
			last = r
		}
		if last <= 3 {
			if st, err := pinCommand(ctx, c, false, "1234"); err != nil || st != ctap2.OK {
				t.Fatalf("trial %d: right PIN: %v %v", i, st, err)
			}
			last = pinRetries(t, ctx, c)
		}
		done := make(chan ctap2.Status, 1)
		go func() {
			st, _ := pinCommand(ctx, c, false, "0000")
			done <- st
		}()
		time.Sleep(time.Duration(rand.IntN(15000)) * time.Microsecond)
		kill()
		select {
		case st := <-done:
			if st == ctap2.ErrPINInvalid {
				counted++
			}
		case <-time.After(500 * time.Millisecond):
			killed++ // the client never got an answer
		}
	}
	addr, stop, _ = startDaemonIn(t, state, "--tpm", spec)
	if r := pinRetries(t, ctx, dial(t, ctx, addr)); r > last {
		t.Fatalf("after the trials: retries went up from %d to %d", last, r)
	}
	stop()
	t.Logf("%d SIGKILLs during wrong-PIN attempts (%d answered PIN_INVALID first, %d cut off): retries never went up without the right PIN", trials, counted, killed)
}
