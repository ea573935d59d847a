package token_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/largeblob"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// memSecrets is an in-memory SecretDeriver for fuzzing without a TPM.
type memSecrets struct{}

func (memSecrets) CredRandom(id []byte, uv bool) ([]byte, error) {
	m := hmac.New(sha256.New, []byte("fuzz"))
	m.Write(append([]byte{boolToByte(uv)}, id...))
	return m.Sum(nil), nil
}

func (memSecrets) LargeBlobKey(id []byte) ([]byte, error) {
	m := hmac.New(sha256.New, []byte("fuzz lbk"))
	m.Write(id)
	return m.Sum(nil), nil
}

func boolToByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func memToken(t testing.TB) (*token.Authenticator, *largeblob.Store) {
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 50)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := largeblob.Open("", largeblob.DefaultMaxSize, bytes.Repeat([]byte{1}, largeblob.OwnerSize))
	if err != nil {
		t.Fatal(err)
	}
	a := token.New(token.Config{Keys: &memoryKeys{}, Presence: presence.Always{}, Resident: store, Secrets: memSecrets{}, LargeBlobs: blobs})
	t.Cleanup(a.Close)
	return a, blobs
}

// FuzzLargeBlobs sends three arbitrary authenticatorLargeBlobs requests
// in a row: every answer is one status byte (CBOR after OK only for a
// get), and the stored array is always one whose integrity check holds.
func FuzzLargeBlobs(f *testing.F) {
	array := withHash([]byte{0x81, 0x41, 0x01})
	for _, m := range [][3]map[int]any{
		{{2: array, 3: 0, 4: len(array)}, {1: 100, 3: 0}, {1: 1, 3: len(array)}},
		{{2: array[:5], 3: 0, 4: len(array)}, {2: array[5:], 3: 5}, {1: 7545, 3: 0}},
		{{2: array[:5], 3: 0, 4: len(array)}, {2: array[5:], 3: 6}, {2: []byte{0}, 3: 0, 4: 17}},
	} {
		var args [3][]byte
		for i := range m {
			args[i], _ = ctap2.Marshal(m[i])
		}
		f.Add(args[0], args[1], args[2])
	}
	f.Fuzz(func(t *testing.T, p1, p2, p3 []byte) {
		a, blobs := memToken(t)
		for _, p := range [][]byte{p1, p2, p3} {
			rsp := a.HandleCBOR(context.Background(), append([]byte{ctap2.CmdLargeBlobs}, p...), nil)
			if len(rsp) == 0 {
				t.Fatal("empty answer")
			}
			if rsp[0] == byte(ctap2.OK) && len(rsp) > 1 {
				var r ctap2.LargeBlobsResponse
				if cbor.Unmarshal(rsp[1:], &r) != nil {
					t.Fatalf("answer %x", rsp)
				}
			}
			stored, _ := blobs.Read(0, largeblob.DefaultMaxSize)
			if !largeblob.Valid(stored) {
				t.Fatalf("stored array %x fails its check", stored)
			}
		}
	})
}

// FuzzMakeCredentialExtensions sends makeCredential with an arbitrary
// extensions map (discoverable or not), then getAssertion with another:
// every answer is a status byte, and an OK one decodes.
func FuzzMakeCredentialExtensions(f *testing.F) {
	for _, m := range []map[string]any{
		{"credBlob": bytes.Repeat([]byte{1}, 32), "largeBlobKey": true, "thirdPartyPayment": true, "minPinLength": true},
		{"hmac-secret": true, "hmac-secret-mc": map[int]any{1: map[int]any{1: 2}, 2: []byte{1}, 3: []byte{2}}},
		{"credBlob": make([]byte, 40), "largeBlobKey": false},
		{"credProtect": 3, "thirdPartyPayment": 1},
	} {
		b, _ := ctap2.Marshal(m)
		g, _ := ctap2.Marshal(map[string]any{"getCredBlob": true, "largeBlobKey": true, "thirdPartyPayment": true})
		f.Add(b, g, true)
	}
	f.Fuzz(func(t *testing.T, mcExt, gaExt []byte, rk bool) {
		a, _ := memToken(t)
		p := makeCredParams("example.org", map[int]any{6: cbor.RawMessage(mcExt), 7: map[string]bool{"rk": rk}, 11: []string{"none", "packed"}})
		b, err := ctap2.Marshal(p)
		if err != nil {
			return // not CBOR at all: the decoder's own fuzz target covers it
		}
		rsp := a.HandleCBOR(context.Background(), append([]byte{ctap2.CmdMakeCredential}, b...), nil)
		if len(rsp) == 0 {
			t.Fatal("empty answer")
		}
		if rsp[0] != byte(ctap2.OK) {
			return
		}
		var mc ctap2.MakeCredentialResponse
		if cbor.Unmarshal(rsp[1:], &mc) != nil {
			t.Fatalf("makeCredential answer %x", rsp)
		}
		cdh := sha256.Sum256([]byte("x"))
		g, err := ctap2.Marshal(map[int]any{1: "example.org", 2: cdh[:], 4: cbor.RawMessage(gaExt)})
		if err != nil {
			return
		}
		rsp = a.HandleCBOR(context.Background(), append([]byte{ctap2.CmdGetAssertion}, g...), nil)
		if len(rsp) == 0 {
			t.Fatal("empty answer")
		}
		var ga ctap2.GetAssertionResponse
		if rsp[0] == byte(ctap2.OK) && cbor.Unmarshal(rsp[1:], &ga) != nil {
			t.Fatalf("getAssertion answer %x", rsp)
		}
	})
}
