package ctap2

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
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

func pinSeeds(f *testing.F) {
	key := map[int]any{1: 2, 3: -25, -1: 1, -2: bytes.Repeat([]byte{3}, 32), -3: bytes.Repeat([]byte{4}, 32)}
	for _, m := range []map[int]any{
		{1: 2, 2: PINGetRetries},
		{1: 2, 2: PINGetKeyAgreement},
		{1: 1, 2: PINSet, 3: key, 4: bytes.Repeat([]byte{5}, 16), 5: bytes.Repeat([]byte{6}, 64)},
		{1: 2, 2: PINChange, 3: key, 4: bytes.Repeat([]byte{5}, 32), 5: bytes.Repeat([]byte{6}, 80), 6: bytes.Repeat([]byte{7}, 32)},
		{1: 2, 2: PINGetTokenUsingPINWithPerms, 3: key, 6: bytes.Repeat([]byte{7}, 32), 9: 3, 10: "example.org"},
	} {
		b, _ := Marshal(m)
		f.Add(b)
	}
	params, _ := Marshal(map[int]any{2: map[string]any{"type": "public-key", "id": []byte{1, 2}}, 3: map[string]any{"id": []byte{1}, "name": "n"}})
	for _, m := range []map[int]any{
		{1: CredMgmtGetMetadata, 3: 2, 4: bytes.Repeat([]byte{5}, 32)},
		{1: CredMgmtEnumerateRPsNext},
		{1: CredMgmtUpdateUser, 2: cborRaw(params), 3: 1, 4: bytes.Repeat([]byte{5}, 16)},
	} {
		b, _ := Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0xa0})
}

func FuzzDecodeClientPIN(f *testing.F) {
	pinSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeClientPIN(b)
		checkDecode(t, b, err)
		if err == nil && r.SubCommand == nil {
			t.Fatal("accepted a request without a subcommand")
		}
	})
}

func FuzzDecodeCredMgmt(f *testing.F) {
	pinSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _, err := DecodeCredMgmt(b)
		checkDecode(t, b, err)
		if err == nil && r.SubCommand == nil {
			t.Fatal("accepted a request without a subcommand")
		}
	})
}

func cborRaw(b []byte) cbor.RawMessage { return cbor.RawMessage(b) }

func FuzzDecodeLargeBlobs(f *testing.F) {
	for _, m := range []map[int]any{
		{1: 7545, 3: 0},
		{2: bytes.Repeat([]byte{0x80}, 17), 3: 0, 4: 17, 5: bytes.Repeat([]byte{5}, 32), 6: 2},
		{2: []byte{1}, 3: 17},
		{1: 1, 2: []byte{1}, 3: 0},
		{1: 1},
	} {
		b, _ := Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeLargeBlobs(b)
		checkDecode(t, b, err)
		if err == nil && (r.Offset == nil || (r.Get == nil) == (r.Set == nil)) {
			t.Fatal("accepted a request without offset, or without exactly one of get and set")
		}
	})
}
