package token_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/largeblob"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// extToken is pinToken with a large-blob store in a file.
func extToken(t *testing.T) (*token.Authenticator, string) {
	t.Helper()
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	dir := t.TempDir()
	store, err := credstore.Open(filepath.Join(dir, "credentials.db"), bytes.Repeat([]byte{1}, 32), 50)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	path := filepath.Join(dir, "largeblobs")
	blobs, err := largeblob.Open(path, largeblob.DefaultMaxSize, bytes.Repeat([]byte{1}, largeblob.OwnerSize))
	if err != nil {
		t.Fatal(err)
	}
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, Resident: store, PIN: token.TPMPIN{Engine: e},
		Secrets: token.TPMKeys{Engine: e}, LargeBlobs: blobs, Logger: testLogger(t)})
	t.Cleanup(a.Close)
	return a, path
}

type mcResult struct {
	st   ctap2.Status
	rsp  ctap2.MakeCredentialResponse
	id   []byte
	exts map[string]any
}

// mc runs makeCredential and splits out the credential ID and the
// authData extension outputs.
func mc(t *testing.T, a *token.Authenticator, rp string, extra map[int]any) mcResult {
	t.Helper()
	st, body := call(t, a, ctap2.CmdMakeCredential, makeCredParams(rp, extra))
	r := mcResult{st: st}
	if st != ctap2.OK {
		return r
	}
	if err := cbor.Unmarshal(body, &r.rsp); err != nil {
		t.Fatal(err)
	}
	ad := r.rsp.AuthData
	n := int(binary.BigEndian.Uint16(ad[53:55]))
	r.id = bytes.Clone(ad[55 : 55+n])
	if ad[32]&ctap2.FlagED != 0 {
		var cose cbor.RawMessage
		rest, err := cbor.UnmarshalFirst(ad[55+n:], &cose)
		if err != nil || cbor.Unmarshal(rest, &r.exts) != nil {
			t.Fatalf("authData extensions: %v", err)
		}
	}
	return r
}

type gaResult struct {
	st   ctap2.Status
	rsp  ctap2.GetAssertionResponse
	exts map[string]any
}

func ga(t *testing.T, a *token.Authenticator, rp string, id []byte, ext map[string]any) gaResult {
	t.Helper()
	cdh := sha256.Sum256([]byte("assert " + rp))
	p := map[int]any{1: rp, 2: cdh[:]}
	if id != nil {
		p[3] = []map[string]any{{"type": "public-key", "id": id}}
	}
	if ext != nil {
		p[4] = ext
	}
	st, body := call(t, a, ctap2.CmdGetAssertion, p)
	r := gaResult{st: st}
	if st != ctap2.OK {
		return r
	}
	if err := cbor.Unmarshal(body, &r.rsp); err != nil {
		t.Fatal(err)
	}
	if r.rsp.AuthData[32]&ctap2.FlagED != 0 && cbor.Unmarshal(r.rsp.AuthData[37:], &r.exts) != nil {
		t.Fatal("getAssertion extensions do not decode")
	}
	return r
}

var rkOn = map[string]bool{"rk": true}

func TestGetInfoListsTheExtensions(t *testing.T) {
	a, _ := extToken(t)
	i := info(t, a)
	for _, e := range []string{"credProtect", "credBlob", "hmac-secret", "hmac-secret-mc", "largeBlobKey", "minPinLength", "thirdPartyPayment"} {
		if !slices.Contains(i.Extensions, e) {
			t.Errorf("getInfo extensions %v lack %s", i.Extensions, e)
		}
	}
	if i.MaxCredBlobLength < 32 || i.MaxSerializedLargeBlobArray < 4096 || !i.Options["largeBlobs"] {
		t.Errorf("maxCredBlobLength %d, maxSerializedLargeBlobArray %d, largeBlobs %v", i.MaxCredBlobLength, i.MaxSerializedLargeBlobArray, i.Options["largeBlobs"])
	}
	if !slices.Equal(i.AttestationFormats, []string{"packed", "none"}) {
		t.Errorf("attestationFormats %v", i.AttestationFormats)
	}
	if slices.Contains(i.Versions, "FIDO_2_2") {
		t.Error("versions list FIDO_2_2, which CTAP 2.2 forbids")
	}
}

// credBlob (CTAP 2.1 section 12.2): stored with a discoverable credential
// and returned with getCredBlob; refused (false) for a non-discoverable
// one and for more than maxCredBlobLength.
func TestCredBlob(t *testing.T) {
	a, _ := extToken(t)
	blob := bytes.Repeat([]byte{0xcb}, 32)
	r := mc(t, a, "example.org", map[int]any{6: map[string]any{"credBlob": blob}, 7: rkOn})
	if r.st != ctap2.OK || r.exts["credBlob"] != true {
		t.Fatalf("makeCredential rk with credBlob: %v %v", r.st, r.exts)
	}
	g := ga(t, a, "example.org", nil, map[string]any{"getCredBlob": true})
	if g.st != ctap2.OK || !bytes.Equal(asBytes(g.exts["credBlob"]), blob) {
		t.Fatalf("getAssertion getCredBlob: %v %v", g.st, g.exts)
	}
	if g := ga(t, a, "example.org", r.id, nil); g.exts["credBlob"] != nil {
		t.Fatal("credBlob returned without getCredBlob")
	}
	nr := mc(t, a, "other.example", map[int]any{6: map[string]any{"credBlob": blob}})
	if nr.st != ctap2.OK || nr.exts["credBlob"] != false {
		t.Fatalf("non-discoverable with credBlob: %v %v", nr.st, nr.exts)
	}
	if g := ga(t, a, "other.example", nr.id, map[string]any{"getCredBlob": true}); g.st != ctap2.OK || g.exts["credBlob"] == nil || len(asBytes(g.exts["credBlob"])) != 0 {
		t.Fatalf("getCredBlob without a blob: %v %v", g.st, g.exts)
	}
	long := mc(t, a, "third.example", map[int]any{6: map[string]any{"credBlob": make([]byte, 33)}, 7: rkOn})
	if long.st != ctap2.OK || long.exts["credBlob"] != false {
		t.Fatalf("33-byte credBlob: %v %v", long.st, long.exts)
	}
	if r := mc(t, a, "example.org", map[int]any{6: map[string]any{"credBlob": true}, 7: rkOn}); r.st != ctap2.ErrCBORUnexpectedType {
		t.Fatalf("credBlob of the wrong type: %v", r.st)
	}
}

func asBytes(v any) []byte { b, _ := v.([]byte); return b }

// largeBlobKey (section 12.3): for discoverable credentials only, the same
// key at registration and assertion, different per credential.
func TestLargeBlobKey(t *testing.T) {
	a, _ := extToken(t)
	lbk := map[int]any{6: map[string]any{"largeBlobKey": true}, 7: rkOn}
	r := mc(t, a, "example.org", lbk)
	if r.st != ctap2.OK || len(r.rsp.LargeBlobKey) != 32 {
		t.Fatalf("makeCredential largeBlobKey: %v %x", r.st, r.rsp.LargeBlobKey)
	}
	g := ga(t, a, "example.org", nil, map[string]any{"largeBlobKey": true})
	if g.st != ctap2.OK || !bytes.Equal(g.rsp.LargeBlobKey, r.rsp.LargeBlobKey) {
		t.Fatalf("getAssertion largeBlobKey: %v %x", g.st, g.rsp.LargeBlobKey)
	}
	if g := ga(t, a, "example.org", nil, nil); g.rsp.LargeBlobKey != nil {
		t.Fatal("largeBlobKey returned unasked")
	}
	other := mc(t, a, "other.example", lbk)
	if bytes.Equal(other.rsp.LargeBlobKey, r.rsp.LargeBlobKey) {
		t.Fatal("two credentials share a largeBlobKey")
	}
	if r := mc(t, a, "x.example", map[int]any{6: map[string]any{"largeBlobKey": true}}); r.st != ctap2.ErrInvalidOption {
		t.Fatalf("largeBlobKey for a non-discoverable credential: %v", r.st)
	}
	if r := mc(t, a, "x.example", map[int]any{6: map[string]any{"largeBlobKey": false}, 7: rkOn}); r.st != ctap2.ErrInvalidOption {
		t.Fatalf("largeBlobKey false: %v", r.st)
	}
	if g := ga(t, a, "example.org", nil, map[string]any{"largeBlobKey": false}); g.st != ctap2.ErrInvalidOption {
		t.Fatalf("getAssertion largeBlobKey false: %v", g.st)
	}
}

func withHash(data []byte) []byte {
	h := sha256.Sum256(data)
	return append(bytes.Clone(data), h[:16]...)
}

func readBlobs(t *testing.T, a *token.Authenticator, offset, n int) (ctap2.Status, []byte) {
	t.Helper()
	st, body := call(t, a, ctap2.CmdLargeBlobs, map[int]any{1: n, 3: offset})
	var rsp ctap2.LargeBlobsResponse
	if st == ctap2.OK && cbor.Unmarshal(body, &rsp) != nil {
		t.Fatal("largeBlobs get response")
	}
	return st, rsp.Config
}

// lbwParam is section 6.10.2's pinUvAuthParam for a set.
func (p *platform) lbwParam(offset int, set []byte) []byte {
	msg := bytes.Repeat([]byte{0xff}, 32)
	msg = append(msg, 0x0c, 0x00)
	msg = binary.LittleEndian.AppendUint32(msg, uint32(offset))
	h := sha256.Sum256(set)
	return p.proto.Authenticate(p.token, append(msg, h[:]...))
}

// authenticatorLargeBlobs (CTAP 2.1 section 6.10): reads are free, a
// write in fragments is committed only whole and with a hash that
// verifies, once a PIN is set only with the lbw permission, and the
// array survives a restart in its file.
func TestLargeBlobs(t *testing.T) {
	a, path := extToken(t)
	if st, b := readBlobs(t, a, 0, 1024); st != ctap2.OK || !bytes.Equal(b, largeblob.Initial()) {
		t.Fatalf("initial array: %v %x", st, b)
	}
	array := withHash(append([]byte{0x81, 0x59, 0x01, 0x00}, bytes.Repeat([]byte{7}, 256)...))
	set := func(offset int, frag []byte, length int, extra map[int]any) ctap2.Status {
		p := map[int]any{2: frag, 3: offset}
		if length >= 0 {
			p[4] = length
		}
		for k, v := range extra {
			p[k] = v
		}
		st, _ := call(t, a, ctap2.CmdLargeBlobs, p)
		return st
	}
	// In two fragments, without a PIN (section 6.10.2: no authorization
	// while the authenticator has no user verification).
	if st := set(0, array[:100], len(array), nil); st != ctap2.OK {
		t.Fatalf("first fragment: %v", st)
	}
	if _, b := readBlobs(t, a, 0, 1024); !bytes.Equal(b, largeblob.Initial()) {
		t.Fatal("a partial write is visible")
	}
	if st := set(50, array[100:], -1, nil); st != ctap2.ErrInvalidSeq {
		t.Fatalf("fragment at the wrong offset: %v", st)
	}
	if st := set(100, array[100:], -1, nil); st != ctap2.OK {
		t.Fatalf("last fragment: %v", st)
	}
	if _, b := readBlobs(t, a, 0, 1024); !bytes.Equal(b, array) {
		t.Fatalf("after the write: %x", b)
	}
	if _, b := readBlobs(t, a, 10, 5); !bytes.Equal(b, array[10:15]) {
		t.Fatal("read at an offset")
	}
	if st, _ := readBlobs(t, a, len(array)+1, 5); st != ctap2.ErrInvalidParameter {
		t.Fatalf("read past the end: %v", st)
	}
	if st, _ := readBlobs(t, a, 0, 7609); st != ctap2.ErrInvalidLength {
		t.Fatalf("read more than maxFragmentLength: %v", st)
	}
	// A wrong hash is an integrity failure and changes nothing.
	bad := bytes.Clone(array)
	bad[0] = 0x80
	if st := set(0, bad, len(bad), nil); st != ctap2.ErrIntegrityFailure {
		t.Fatalf("bad hash: %v", st)
	}
	if st := set(0, withHash(make([]byte, 4096)), 4096+16, nil); st != ctap2.ErrLargeBlobFull {
		t.Fatalf("larger than maxSerializedLargeBlobArray: %v", st)
	}
	if st := set(0, []byte{1}, 1, nil); st != ctap2.ErrInvalidParameter {
		t.Fatalf("length below 17: %v", st)
	}
	if st := set(0, array, -1, nil); st != ctap2.ErrInvalidParameter {
		t.Fatalf("offset 0 without length: %v", st)
	}
	if st, _ := call(t, a, ctap2.CmdLargeBlobs, map[int]any{1: 10, 2: []byte{1}, 3: 0}); st != ctap2.ErrInvalidParameter {
		t.Fatalf("get and set: %v", st)
	}
	if st, _ := call(t, a, ctap2.CmdLargeBlobs, map[int]any{1: 10}); st != ctap2.ErrInvalidParameter {
		t.Fatalf("no offset: %v", st)
	}

	// With a PIN: a pinUvAuthToken with lbw is needed.
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	second := withHash([]byte{0x81, 0x41, 0x02})
	if st := set(0, second, len(second), nil); st != ctap2.ErrPUATRequired {
		t.Fatalf("no pinUvAuthParam with a PIN set: %v", st)
	}
	if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
		t.Fatal(st)
	}
	if st := set(0, second, len(second), map[int]any{5: p.lbwParam(0, second), 6: 2}); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("token without lbw: %v", st)
	}
	if st := p.getToken("1234", ctap2.PermLargeBlobWrite, ""); st != ctap2.OK {
		t.Fatalf("lbw not grantable: %v", st)
	}
	if st := set(0, second, len(second), map[int]any{5: p.lbwParam(1, second), 6: 2}); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("MAC over another offset: %v", st)
	}
	if st := set(0, second, len(second), map[int]any{5: p.lbwParam(0, second), 6: 2}); st != ctap2.OK {
		t.Fatalf("write with lbw: %v", st)
	}
	// Durable: a new store on the same file reads the array back.
	again, err := largeblob.Open(path, largeblob.DefaultMaxSize, bytes.Repeat([]byte{1}, largeblob.OwnerSize))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := again.Read(0, 4096); !bytes.Equal(b, second) {
		t.Fatalf("the file holds %x", b)
	}
}

// hmac-secret-mc (CTAP 2.2): the PRF at registration is the one
// getAssertion's hmac-secret gives later for the same salt and uv.
func TestHMACSecretMC(t *testing.T) {
	a, _ := extToken(t)
	p := newPlatform(t, a, 2)
	p.agree()
	salt := bytes.Repeat([]byte{0x5a}, 32)
	saltEnc := p.encrypt(salt)
	in := map[int]any{1: p.key, 2: saltEnc, 3: p.proto.Authenticate(p.shared, saltEnc), 4: 2}
	if r := mc(t, a, "example.org", map[int]any{6: map[string]any{"hmac-secret-mc": in}}); r.st != ctap2.ErrMissingParameter {
		t.Fatalf("hmac-secret-mc without hmac-secret: %v", r.st)
	}
	r := mc(t, a, "example.org", map[int]any{6: map[string]any{"hmac-secret": true, "hmac-secret-mc": in}})
	if r.st != ctap2.OK || r.exts["hmac-secret"] != true {
		t.Fatalf("makeCredential with hmac-secret-mc: %v %v", r.st, r.exts)
	}
	out, err := p.proto.Decrypt(p.shared, asBytes(r.exts["hmac-secret-mc"]))
	if err != nil || len(out) != 32 {
		t.Fatalf("hmac-secret-mc output: %x %v", out, err)
	}
	// The attestation still verifies over authData with the output in it.
	verifyPacked(t, r, "example.org")
	st, later, _ := p.hmacSecretAssert("example.org", r.id, salt, false)
	if st != ctap2.OK || !bytes.Equal(later, out) {
		t.Fatalf("getAssertion hmac-secret %x, registration gave %x", later, out)
	}
}

func verifyPacked(t *testing.T, r mcResult, rp string) {
	t.Helper()
	ad := r.rsp.AuthData
	n := int(binary.BigEndian.Uint16(ad[53:55]))
	var cose cbor.RawMessage
	if _, err := cbor.UnmarshalFirst(ad[55+n:], &cose); err != nil {
		t.Fatal(err)
	}
	pub, alg := coseToPublic(t, cose)
	sig, _ := r.rsp.AttStmt["sig"].([]byte)
	cdh := sha256.Sum256([]byte("client data " + rp))
	verifyCOSE(t, pub, alg, append(bytes.Clone(ad), cdh[:]...), sig)
}

// thirdPartyPayment (CTAP 2.2): the flag set at registration comes back
// in getAssertion when asked, from the credential ID.
func TestThirdPartyPayment(t *testing.T) {
	a, _ := extToken(t)
	pay := mc(t, a, "shop.example", map[int]any{6: map[string]any{"thirdPartyPayment": true}})
	plain := mc(t, a, "shop.example", nil)
	if pay.st != ctap2.OK || plain.st != ctap2.OK || pay.exts["thirdPartyPayment"] != true || plain.exts["thirdPartyPayment"] != nil {
		t.Fatal(pay.st, plain.st, pay.exts, plain.exts)
	}
	ask := map[string]any{"thirdPartyPayment": true}
	if g := ga(t, a, "shop.example", pay.id, ask); g.st != ctap2.OK || g.exts["thirdPartyPayment"] != true {
		t.Fatalf("payment credential: %v %v", g.st, g.exts)
	}
	if g := ga(t, a, "shop.example", plain.id, ask); g.st != ctap2.OK || g.exts["thirdPartyPayment"] != false {
		t.Fatalf("other credential: %v %v", g.st, g.exts)
	}
	if g := ga(t, a, "shop.example", pay.id, nil); g.exts["thirdPartyPayment"] != nil {
		t.Fatal("thirdPartyPayment returned unasked")
	}
	if r := mc(t, a, "shop.example", map[int]any{6: map[string]any{"thirdPartyPayment": 1}}); r.st != ctap2.ErrCBORUnexpectedType {
		t.Fatalf("thirdPartyPayment of the wrong type: %v", r.st)
	}
}

// attestationFormatsPreference (CTAP 2.2, makeCredential 0x0B): the first
// format we have; unknown ones ignored.
func TestAttestationFormatsPreference(t *testing.T) {
	a, _ := extToken(t)
	for _, c := range []struct {
		pref []string
		want string
	}{{[]string{"none"}, "none"}, {[]string{"tpm", "none", "packed"}, "none"}, {[]string{"tpm"}, "packed"}, {[]string{"packed", "none"}, "packed"}} {
		r := mc(t, a, "example.org", map[int]any{11: c.pref})
		if r.st != ctap2.OK || r.rsp.Fmt != c.want {
			t.Fatalf("%v: %v fmt %q", c.pref, r.st, r.rsp.Fmt)
		}
		if c.want == "none" && len(r.rsp.AttStmt) != 0 {
			t.Fatalf("none with attStmt %v", r.rsp.AttStmt)
		}
		if c.want == "packed" {
			verifyPacked(t, r, "example.org")
		}
	}
}

// minPinLength (section 12.4): an RP that is not on setMinPINLength's list
// gets no output (TestMinPinLengthExtensionForListedRP: one on it does).
func TestMinPinLengthExtensionForUnlistedRP(t *testing.T) {
	a, _ := extToken(t)
	r := mc(t, a, "example.org", map[int]any{6: map[string]any{"minPinLength": true}})
	if r.st != ctap2.OK || r.exts["minPinLength"] != nil {
		t.Fatalf("%v %v", r.st, r.exts)
	}
}

// Credential management's enumerateCredentials carries the largeBlobKey
// (CTAP 2.1 section 6.8.3), the one makeCredential gave.
func TestCredentialManagementListsLargeBlobKey(t *testing.T) {
	a, _ := extToken(t)
	r := mc(t, a, "example.org", map[int]any{6: map[string]any{"largeBlobKey": true}, 7: rkOn})
	if r.st != ctap2.OK {
		t.Fatal(r.st)
	}
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	if st := p.getToken("1234", ctap2.PermCredMgmt, ""); st != ctap2.OK {
		t.Fatal(st)
	}
	rp := sha256.Sum256([]byte("example.org"))
	st, rsp := p.credMgmt(ctap2.CredMgmtEnumerateCredsBegin, map[int]any{1: rp[:]})
	if st != ctap2.OK || !bytes.Equal(rsp.LargeBlobKey, r.rsp.LargeBlobKey) {
		t.Fatalf("enumerateCredentials: %v largeBlobKey %x, want %x", st, rsp.LargeBlobKey, r.rsp.LargeBlobKey)
	}
}
