package token_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
)

func FuzzParseAPDU(f *testing.F) {
	f.Add([]byte{0, 3, 0, 0})
	f.Add([]byte{0, 3, 0, 0, 0, 0, 0})
	f.Add(append([]byte{0, 1, 3, 0, 64}, make([]byte, 64)...))
	f.Add(append([]byte{0, 1, 3, 0, 0, 0, 64}, make([]byte, 66)...))
	f.Add(append([]byte{0, 2, 7, 0, 0, 1, 0}, make([]byte, 258)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := token.ParseAPDU(b)
		if err != nil {
			var ae *token.APDUError
			if !errors.As(err, &ae) || ae.SW != token.SWWrongLength {
				t.Fatalf("error %v is not a wrong-length APDUError", err)
			}
			return
		}
		for _, ext := range []bool{false, true} {
			again, err := token.ParseAPDU(a.Encode(ext))
			if err != nil {
				t.Fatalf("re-encoded APDU (ext=%v) does not parse: %v", ext, err)
			}
			if again.CLA != a.CLA || again.INS != a.INS || again.P1 != a.P1 || again.P2 != a.P2 ||
				!bytes.Equal(again.Data, a.Data) || again.Le != a.Le {
				t.Fatalf("round trip changed the APDU: %+v -> %+v", a, again)
			}
		}
	})
}

// memoryKeys is an in-memory Keys for fuzzing the U2F layer alone: the
// "credential ID" is an index into a table, bound to its appID.
type memoryKeys struct {
	keys []*ecdsa.PrivateKey
	rps  [][32]byte
	ctr  uint32
}

func (m *memoryKeys) NewCredential(rp [32]byte, _ int64, _ token.CredentialPolicy, fn func([]byte, crypto.Signer) error) error {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	m.keys, m.rps = append(m.keys, k), append(m.rps, rp)
	return fn([]byte{byte(len(m.keys) - 1)}, k)
}

func (m *memoryKeys) lookup(id []byte, rp [32]byte) (*ecdsa.PrivateKey, error) {
	if len(id) != 1 || int(id[0]) >= len(m.keys) || m.rps[id[0]] != rp {
		return nil, token.ErrUnknownCredential
	}
	return m.keys[id[0]], nil
}

func (m *memoryKeys) UseCredential(id []byte, rp [32]byte, fn func(crypto.Signer) error) error {
	k, err := m.lookup(id, rp)
	if err != nil {
		return err
	}
	return fn(k)
}

func (m *memoryKeys) Inspect(id []byte, rp [32]byte) (token.CredentialPolicy, bool, error) {
	_, err := m.lookup(id, rp)
	return token.CredentialPolicy{}, false, err
}

func (m *memoryKeys) Algorithms() []int64 { return []int64{-7} }

func (m *memoryKeys) NextCounter() (uint32, error) { m.ctr++; return m.ctr, nil }

func FuzzHandleAPDU(f *testing.F) {
	app := [32]byte{1}
	f.Add([]byte{0, 3, 0, 0})
	f.Add(append([]byte{0, 1, 3, 0, 64}, make([]byte, 64)...))
	auth := append([]byte{0, 2, 3, 0, 66}, make([]byte, 32)...)
	auth = append(append(auth, app[:]...), 1, 0)
	f.Add(auth)
	f.Fuzz(func(t *testing.T, msg []byte) {
		keys := &memoryKeys{}
		a := token.New(token.Config{Keys: keys, Presence: presence.Always{}})
		defer a.Close()
		keys.NewCredential(app, -7, token.CredentialPolicy{}, func([]byte, crypto.Signer) error { return nil })
		rsp := a.HandleAPDU(context.Background(), msg)
		if len(rsp) < 2 {
			t.Fatalf("response without a status word: %x", rsp)
		}
		if sw := uint16(rsp[len(rsp)-2])<<8 | uint16(rsp[len(rsp)-1]); sw != token.SWNoError && len(rsp) != 2 {
			t.Fatalf("error SW %04X with %d data bytes", sw, len(rsp)-2)
		}
	})
}
