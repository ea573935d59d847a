package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func FuzzParseCredential(f *testing.F) {
	rp := [32]byte{1, 2, 3}
	// A well-formed public area with a made-up private blob: parses, and
	// only the TPM could tell it is forged.
	tmpl := credentialTemplate(rp)
	pub := tpm2.Marshal(tmpl)
	good := (&credential{public: pub, private: bytes.Repeat([]byte{0xaa}, 110)}).v1ID()
	f.Add(good, false)
	f.Add(good, true)
	f.Add([]byte{1, 0, 0, 0, 0}, false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, id []byte, otherRP bool) {
		want := rp
		if otherRP {
			want[0] ^= 0xff
		}
		c, err := parseCredentialV1(id, want)
		if err != nil {
			if !errors.Is(err, ErrForeignCredential) {
				t.Fatalf("error %v is not ErrForeignCredential", err)
			}
			return
		}
		if otherRP {
			t.Fatal("credential bound to one RP parsed for another")
		}
		if !bytes.Equal(c.v1ID(), id) {
			t.Fatal("accepted credential does not re-encode to the same bytes")
		}
	})
}

// FuzzParseCredentialV2 feeds version-2 IDs, valid ones (tagged under the
// fuzzer's key) among them: only an ID whose every byte is what v2ID
// writes is accepted, for its own RP only.
func FuzzParseCredentialV2(f *testing.F) {
	idKey := &[32]byte{9, 9, 9}
	rp := [32]byte{1, 2, 3}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecUnique := append(ec.X.FillBytes(make([]byte, 32)), ec.Y.FillBytes(make([]byte, 32))...)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384Unique := append(p384.X.FillBytes(make([]byte, 48)), p384.Y.FillBytes(make([]byte, 48))...)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, policy := range []byte{0, 1, 2 | 4, 3 | 4, 8, 3 | 4 | 8, 0x10} {
		f.Add(v2ID(idKey, rp, policy, &keyTypes[0], ecUnique, bytes.Repeat([]byte{0xaa}, 126)), false)
	}
	f.Add(v2ID(idKey, rp, 0, &keyTypes[1], p384Unique, []byte{1}), false)
	f.Add(v2ID(idKey, rp, 0, &keyTypes[3], rsaKey.N.Bytes(), []byte{1, 2}), false)
	f.Add(v2ID(idKey, rp, 0, &keyTypes[4], rsaKey.N.Bytes(), []byte{1, 2}), true)
	f.Add([]byte{2, 0, 1}, false)
	f.Fuzz(func(t *testing.T, id []byte, otherRP bool) {
		want := rp
		if otherRP {
			want[0] ^= 0xff
		}
		_, err := parseCredentialV2(id, want, idKey)
		if err != nil {
			if !errors.Is(err, ErrForeignCredential) {
				t.Fatalf("error %v is not ErrForeignCredential", err)
			}
			return
		}
		if otherRP {
			t.Fatal("credential tagged for one RP parsed for another")
		}
		kt, policy, unique, private, _ := splitV2(id)
		if got := v2ID(idKey, want, policy, kt, unique, private); !bytes.Equal(got, id) {
			t.Fatal("accepted credential does not re-encode to the same bytes")
		}
		if _, err := parseCredentialV2(id, want, &[32]byte{1}); err == nil {
			t.Fatal("credential accepted under another installation's key")
		}
	})
}
