package pin

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"testing"
)

// FuzzDecrypt feeds arbitrary shared secrets and ciphertexts to both
// protocols: the token decrypts what any USB host sends, so every input
// must give an error or a plaintext, never a panic. MAC functions get the
// same bytes as key and message.
func FuzzDecrypt(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 16))
	f.Add(make([]byte, 64), make([]byte, 32))
	f.Add(make([]byte, 64), make([]byte, 16))
	f.Add(make([]byte, 32), make([]byte, 64+16))
	f.Add([]byte{}, []byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 63), bytes.Repeat([]byte{1}, 17))
	f.Fuzz(func(t *testing.T, shared, ciphertext []byte) {
		for _, v := range []int{1, 2} {
			p, _ := ProtocolByVersion(v)
			pt, err := p.Decrypt(shared, ciphertext)
			secretOK := (v == 1 && len(shared) == 32) || (v == 2 && len(shared) == 64)
			lenOK := len(ciphertext)%16 == 0 && len(ciphertext) >= 16*v
			switch {
			case !secretOK:
				if !errors.Is(err, ErrBadSharedSecret) {
					t.Fatalf("v%d: %d-byte secret: %v", v, len(shared), err)
				}
			case !lenOK:
				if !errors.Is(err, ErrBadCiphertext) {
					t.Fatalf("v%d: %d-byte ciphertext: %v", v, len(ciphertext), err)
				}
			case err != nil:
				t.Fatalf("v%d: %v", v, err)
			default:
				if want := len(ciphertext) - 16*(v-1); len(pt) != want {
					t.Fatalf("v%d: %d-byte plaintext, want %d", v, len(pt), want)
				}
				// Decrypt then Encrypt gives the ciphertext back for
				// protocol one (zero IV); for two, at least a round trip.
				ct, err := p.Encrypt(shared, pt)
				if err != nil {
					t.Fatalf("v%d Encrypt: %v", v, err)
				}
				if v == 1 && !bytes.Equal(ct, ciphertext) {
					t.Fatalf("v1: re-encryption differs")
				}
				if back, err := p.Decrypt(shared, ct); err != nil || !bytes.Equal(back, pt) {
					t.Fatalf("v%d: round trip %x, %v", v, back, err)
				}
			}
			m := p.Authenticate(shared, ciphertext)
			if !p.Verify(shared, ciphertext, m) {
				t.Fatalf("v%d: Verify rejects Authenticate", v)
			}
			if p.Verify(shared, ciphertext, ciphertext) && !bytes.Equal(ciphertext, m) {
				t.Fatalf("v%d: Verify accepts a wrong MAC", v)
			}
		}
	})
}

// FuzzSharedSecret feeds arbitrary platform coordinates to the key
// agreement: invalid points must be ErrBadKeyAgreement, valid ones a
// secret of the protocol's length, and nothing may panic.
func FuzzSharedSecret(f *testing.F) {
	k, err := NewKeyAgreement()
	if err != nil {
		f.Fatal(err)
	}
	ax, ay := k.PublicXY()
	f.Add(ax, ay)
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add([]byte{1}, []byte{1})
	f.Add([]byte{}, []byte{})
	f.Add(append(make([]byte, 31), 1), append(make([]byte, 31), 1))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, x, y []byte) {
		valid := false
		if len(x) == 32 && len(y) == 32 {
			_, err := ecdh.P256().NewPublicKey(append(append([]byte{4}, x...), y...))
			valid = err == nil
		}
		for _, v := range []int{1, 2} {
			p, _ := ProtocolByVersion(v)
			s, err := k.SharedSecret(p, x, y)
			if !valid {
				if !errors.Is(err, ErrBadKeyAgreement) || s != nil {
					t.Fatalf("v%d: invalid point (%x, %x) gave %x, %v", v, x, y, s, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("v%d: valid point (%x, %x): %v", v, x, y, err)
			}
			if len(s) != 32*v {
				t.Fatalf("v%d: %d-byte secret", v, len(s))
			}
		}
	})
}
