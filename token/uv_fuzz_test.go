package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"sync"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// memUV is a reader that matches every other finger, for fuzzing the
// built-in UV handlers without fprintd or a TPM (both have their own
// tests).
type memUV struct {
	mu    sync.Mutex
	n     int
	spent int
}

func (m *memUV) Verify(ctx context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	return m.n%2 == 0, ctx.Err()
}
func (m *memUV) Probe(context.Context) UVState { return UVReady }
func (m *memUV) UVRetries() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(0, 5-m.spent), nil
}
func (m *memUV) SpendUVAttempt() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.spent >= 5 {
		return 0, ErrUVBlocked
	}
	m.spent++
	return 5 - m.spent, nil
}
func (m *memUV) RefundUVAttempt() error {
	m.mu.Lock()
	m.spent = max(0, m.spent-1)
	m.mu.Unlock()
	return nil
}
func (m *memUV) ResetUVRetries() error { m.mu.Lock(); m.spent = 0; m.mu.Unlock(); return nil }

// FuzzClientPINUV sends arbitrary clientPIN parameters, seeded with the
// built-in UV subcommands, to an authenticator with a reader: every
// answer is one status byte (and CBOR after OK), never a panic.
func FuzzClientPINUV(f *testing.F) {
	key := map[int]any{1: 2, 3: -25, -1: 1, -2: bytes.Repeat([]byte{3}, 32), -3: bytes.Repeat([]byte{4}, 32)}
	for _, m := range []map[int]any{
		{2: ctap2.PINGetUVRetries},
		{1: 2, 2: ctap2.PINGetUVRetries},
		{1: 2, 2: ctap2.PINGetTokenUsingUVWithPerms, 3: key, 9: 2, 10: "example.org"},
		{1: 1, 2: ctap2.PINGetTokenUsingUVWithPerms, 3: key, 9: 4},
		{1: 2, 2: ctap2.PINGetTokenUsingUVWithPerms, 3: key, 9: 0},
		{1: 2, 2: ctap2.PINGetTokenUsingUVWithPerms, 9: 1, 10: ""},
	} {
		b, _ := ctap2.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		h := sha256.Sum256([]byte("1234"))
		uv := &memUV{}
		a := New(Config{PIN: &memPIN{hash: h[:16], retries: 8}, Presence: presence.Always{}, UV: uv, UVRetries: uv})
		defer a.Close()
		for range 2 {
			rsp := a.HandleCBOR(context.Background(), append([]byte{ctap2.CmdClientPIN}, params...), nil)
			if len(rsp) == 0 {
				t.Fatal("empty answer")
			}
		}
	})
}
