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
// marshals for the same template.
func TestPublicArea(t *testing.T) {
	for range 20 {
		var binding [32]byte
		x, y := make([]byte, 32), make([]byte, 32)
		rand.Read(binding[:])
		rand.Read(x)
		rand.Read(y)
		want := tpm2.Marshal(p256Template(binding, x, y))
		if got := publicArea(binding, x, y); !bytes.Equal(got, want) {
			t.Fatalf("publicArea:\n got %x\nwant %x", got, want)
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
	id := v2ID(&idKey, rp, 0, &k.PublicKey, bytes.Repeat([]byte{7}, 126))
	if _, err := parseCredentialV2(id, rp, &idKey); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() { parseCredentialV2(id, rp, &idKey) })
	t.Logf("%.0f allocations per parse", allocs)
	if allocs > 30 {
		t.Errorf("parseCredentialV2 makes %.0f allocations, want at most 30", allocs)
	}
}
