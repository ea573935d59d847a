package ctap2

import (
	"bytes"
	"errors"
	"testing"
)

func seeds(f *testing.F) {
	mc, _ := Marshal(map[int]any{
		1: bytes.Repeat([]byte{1}, 32),
		2: map[string]any{"id": "example.org", "name": "Example"},
		3: map[string]any{"id": []byte("u"), "name": "alice", "displayName": "Alice"},
		4: []map[string]any{{"type": "public-key", "alg": -7}},
		7: map[string]bool{"rk": false},
	})
	ga, _ := Marshal(map[int]any{1: "example.org", 2: bytes.Repeat([]byte{2}, 32), 3: []map[string]any{{"type": "public-key", "id": []byte{1, 2, 3}}}, 5: map[string]bool{"up": false}})
	f.Add(mc)
	f.Add(ga)
	f.Add([]byte{0xa0})
	f.Add([]byte{0xbf, 0xff})
}

// checkDecodeError: every failure is a Status, and an accepted request is
// canonical CBOR (it re-encodes to the same bytes).
func checkDecode(t *testing.T, b []byte, err error) {
	if err != nil {
		var s Status
		if !errors.As(err, &s) {
			t.Fatalf("error %v is not a Status", err)
		}
		return
	}
	var generic any
	if decMode.Unmarshal(b, &generic) != nil {
		t.Fatal("accepted bytes that do not decode")
	}
	if again, _ := Marshal(generic); !bytes.Equal(again, b) {
		t.Fatal("accepted a non-canonical encoding")
	}
}

func FuzzDecodeMakeCredential(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeMakeCredential(b)
		checkDecode(t, b, err)
		if err == nil && (r.RP == nil || r.User == nil || r.ClientDataHash == nil) {
			t.Fatal("accepted a request without its required parameters")
		}
	})
}

func FuzzDecodeGetAssertion(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeGetAssertion(b)
		checkDecode(t, b, err)
		if err == nil && (r.RPID == "" || r.ClientDataHash == nil) {
			t.Fatal("accepted a request without its required parameters")
		}
	})
}
