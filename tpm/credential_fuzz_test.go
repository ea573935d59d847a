package tpm

import (
	"bytes"
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
	good := (&credential{public: pub, private: bytes.Repeat([]byte{0xaa}, 110)}).id()
	f.Add(good, false)
	f.Add(good, true)
	f.Add([]byte{1, 0, 0, 0, 0}, false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, id []byte, otherRP bool) {
		want := rp
		if otherRP {
			want[0] ^= 0xff
		}
		c, err := parseCredential(id, want)
		if err != nil {
			if !errors.Is(err, ErrForeignCredential) {
				t.Fatalf("error %v is not ErrForeignCredential", err)
			}
			return
		}
		if otherRP {
			t.Fatal("credential bound to one RP parsed for another")
		}
		if !bytes.Equal(c.id(), id) {
			t.Fatal("accepted credential does not re-encode to the same bytes")
		}
	})
}
