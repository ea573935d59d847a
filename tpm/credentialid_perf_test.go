package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestPublicArea: the patched layout is byte for byte what go-tpm
// marshals, for every key type.
func TestPublicArea(t *testing.T) {
	for i := range keyTypes {
		kt := &keyTypes[i]
		for range 10 {
			var binding [32]byte
			unique := make([]byte, kt.uniqueSize())
			rand.Read(binding[:])
			rand.Read(unique)
			want := tpm2.Marshal(kt.template(binding, unique))
			if got := kt.publicArea(binding, unique); !bytes.Equal(got, want) {
				t.Fatalf("alg %d publicArea:\n got %x\nwant %x", kt.alg, got, want)
			}
		}
	}
}

// TestParseCredentialV2Allocations bounds the allocations of checking a
// credential ID, which every warm signature does twice (Inspect, then
// the load): go-tpm's reflection-based marshalling of the public area
// made 530, more CPU than the rest of the request outside the TPM.
func TestParseCredentialV2Allocations(t *testing.T) {
	var idKey, rp [32]byte
	rand.Read(idKey[:])
	rand.Read(rp[:])
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	unique := append(k.X.FillBytes(make([]byte, 32)), k.Y.FillBytes(make([]byte, 32))...)
	id := v2ID(&idKey, rp, 0, &keyTypes[0], unique, bytes.Repeat([]byte{7}, 126))
	if _, err := parseCredentialV2(id, rp, &idKey); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() { parseCredentialV2(id, rp, &idKey) })
	t.Logf("%.0f allocations per parse", allocs)
	if allocs > 30 {
		t.Errorf("parseCredentialV2 makes %.0f allocations, want at most 30", allocs)
	}
}
