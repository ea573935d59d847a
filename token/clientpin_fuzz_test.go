package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// memPIN is an in-memory PINStore for fuzzing the clientPIN handlers
// without a TPM (the TPM side has its own tests).
type memPIN struct {
	hash    []byte
	retries int
}

func (m *memPIN) PINStatus() (bool, int, error) { return m.hash != nil, m.retries, nil }
func (m *memPIN) SetPIN(h []byte) error         { m.hash, m.retries = bytes.Clone(h), 8; return nil }
func (m *memPIN) ChangePIN(o, n []byte) (int, error) {
	if r, err := m.CheckPIN(o); err != nil {
		return r, err
	}
	m.hash = bytes.Clone(n)
	return 8, nil
}
func (m *memPIN) CheckPIN(h []byte) (int, error) {
	if m.retries == 0 {
		return 0, ErrPINBlocked
	}
	if !bytes.Equal(h, m.hash) {
		m.retries--
		return m.retries, ErrWrongPIN
	}
	m.retries = 8
	return 8, nil
}

// FuzzClientPIN sends arbitrary clientPIN and credentialManagement
// parameters to an authenticator whose PIN is set: every answer is one
// status byte (and CBOR after OK), never a panic.
func FuzzClientPIN(f *testing.F) {
	key := map[int]any{1: 2, 3: -25, -1: 1, -2: bytes.Repeat([]byte{3}, 32), -3: bytes.Repeat([]byte{4}, 32)}
	for _, m := range []map[int]any{
		{1: 2, 2: ctap2.PINGetRetries},
		{1: 1, 2: ctap2.PINGetKeyAgreement},
		{1: 2, 2: ctap2.PINChange, 3: key, 4: bytes.Repeat([]byte{5}, 32), 5: bytes.Repeat([]byte{6}, 80), 6: bytes.Repeat([]byte{7}, 32)},
		{1: 2, 2: ctap2.PINGetTokenUsingPINWithPerms, 3: key, 6: bytes.Repeat([]byte{7}, 32), 9: 4},
	} {
		b, _ := ctap2.Marshal(m)
		f.Add(byte(ctap2.CmdClientPIN), b)
	}
	f.Add(byte(ctap2.CmdCredentialMgmt), []byte{0xa1, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, cmd byte, params []byte) {
		if cmd != ctap2.CmdClientPIN && cmd != ctap2.CmdCredentialMgmt {
			cmd = ctap2.CmdClientPIN
		}
		h := sha256.Sum256([]byte("1234"))
		a := New(Config{PIN: &memPIN{hash: h[:16], retries: 8}})
		defer a.Close()
		rsp := a.HandleCBOR(context.Background(), append([]byte{cmd}, params...), nil)
		if len(rsp) == 0 || rsp[0] == byte(ctap2.OK) && cmd == ctap2.CmdCredentialMgmt {
			t.Fatalf("answer %x", rsp)
		}
	})
}
