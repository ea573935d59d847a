package token_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/binary"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func call(t *testing.T, a *token.Authenticator, cmd byte, params map[int]any) (ctap2.Status, []byte) {
	t.Helper()
	msg := []byte{cmd}
	if params != nil {
		b, err := ctap2.Marshal(params)
		if err != nil {
			t.Fatal(err)
		}
		msg = append(msg, b...)
	}
	rsp := a.HandleCBOR(context.Background(), msg, nil)
	if len(rsp) == 0 {
		t.Fatal("empty CTAP2 response")
	}
	return ctap2.Status(rsp[0]), rsp[1:]
}

var es256 = []map[string]any{{"type": "public-key", "alg": -7}}

func makeCredParams(rp string, extra map[int]any) map[int]any {
	cdh := sha256.Sum256([]byte("client data " + rp))
	p := map[int]any{
		1: cdh[:],
		2: map[string]any{"id": rp, "name": rp},
		3: map[string]any{"id": []byte("user-1"), "name": "alice", "displayName": "Alice"},
		4: es256,
	}
	for k, v := range extra {
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	return p
}

type madeCredential struct {
	id  []byte
	pub *ecdsa.PublicKey
}

func makeCredential(t *testing.T, a *token.Authenticator, rp string) madeCredential {
	t.Helper()
	params := makeCredParams(rp, nil)
	st, body := call(t, a, ctap2.CmdMakeCredential, params)
	if st != ctap2.OK {
		t.Fatalf("makeCredential: %v", st)
	}
	var rsp struct {
		Fmt      string         `cbor:"1,keyasint"`
		AuthData []byte         `cbor:"2,keyasint"`
		AttStmt  map[string]any `cbor:"3,keyasint"`
	}
	if err := cbor.Unmarshal(body, &rsp); err != nil {
		t.Fatal(err)
	}
	ad := rsp.AuthData
	rpHash := sha256.Sum256([]byte(rp))
	if rsp.Fmt != "packed" || string(ad[:32]) != string(rpHash[:]) || ad[32] != ctap2.FlagUP|ctap2.FlagAT {
		t.Fatalf("fmt %q flags %#x", rsp.Fmt, ad[32])
	}
	if string(ad[37:53]) != string(token.AAGUID[:]) {
		t.Fatal("AAGUID")
	}
	n := int(binary.BigEndian.Uint16(ad[53:55]))
	id := ad[55 : 55+n]
	var cose map[int]any
	if err := cbor.Unmarshal(ad[55+n:], &cose); err != nil {
		t.Fatal(err)
	}
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(cose[-2].([]byte)), Y: new(big.Int).SetBytes(cose[-3].([]byte))}
	sig, _ := rsp.AttStmt["sig"].([]byte)
	if alg, _ := rsp.AttStmt["alg"].(int64); alg != -7 {
		t.Fatalf("attStmt alg %v", rsp.AttStmt["alg"])
	}
	if _, hasX5c := rsp.AttStmt["x5c"]; hasX5c {
		t.Fatal("self-attestation must not carry x5c")
	}
	d := sha256.Sum256(append(append([]byte(nil), ad...), params[1].([]byte)...))
	if !ecdsa.VerifyASN1(pub, d[:], sig) {
		t.Fatal("packed self-attestation does not verify")
	}
	return madeCredential{id: append([]byte(nil), id...), pub: pub}
}

func getAssertion(t *testing.T, a *token.Authenticator, rp string, cdh [32]byte, c madeCredential, opts map[string]bool) (ctap2.Status, byte, uint32) {
	t.Helper()
	p := map[int]any{1: rp, 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": c.id}}}
	if opts != nil {
		p[5] = opts
	}
	st, body := call(t, a, ctap2.CmdGetAssertion, p)
	if st != ctap2.OK {
		return st, 0, 0
	}
	var rsp struct {
		Cred      map[string]any `cbor:"1,keyasint"`
		AuthData  []byte         `cbor:"2,keyasint"`
		Signature []byte         `cbor:"3,keyasint"`
	}
	if err := cbor.Unmarshal(body, &rsp); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(append(append([]byte(nil), rsp.AuthData...), cdh[:]...))
	if !ecdsa.VerifyASN1(c.pub, d[:], rsp.Signature) {
		t.Fatal("assertion signature does not verify")
	}
	return st, rsp.AuthData[32], binary.BigEndian.Uint32(rsp.AuthData[33:37])
}

func TestCTAP2GetInfo(t *testing.T) {
	a, _ := newToken(t, presence.Always{})
	st, body := call(t, a, ctap2.CmdGetInfo, nil)
	var info ctap2.Info
	if st != ctap2.OK || cbor.Unmarshal(body, &info) != nil {
		t.Fatalf("getInfo: %v", st)
	}
	if len(info.AAGUID) != 16 || info.Options["rk"] || !info.Options["up"] || info.Options["plat"] || info.MaxCredentialIDLength != tpm.MaxCredentialIDLength {
		t.Fatalf("getInfo: %+v", info)
	}
	if _, claims := info.Options["clientPin"]; claims {
		t.Fatal("getInfo claims clientPin before it exists")
	}
	if st := a.HandleCBOR(context.Background(), []byte{ctap2.CmdGetInfo, 0xa0}, nil); st[0] != byte(ctap2.ErrInvalidLength) {
		t.Fatalf("getInfo with parameters: %#x", st[0])
	}
}

func TestCTAP2MakeCredentialGetAssertion(t *testing.T) {
	s := &scripted{answers: make(chan error, 8)}
	a, meter := newToken(t, s)
	s.answers <- nil
	c := makeCredential(t, a, "example.org")
	var last uint32
	for i := range 2 {
		s.answers <- nil
		cdh := sha256.Sum256([]byte{byte(i)})
		before := meter.Snapshot()
		st, flags, ctr := getAssertion(t, a, "example.org", cdh, c, nil)
		if st != ctap2.OK || flags&ctap2.FlagUP == 0 || ctr <= last {
			t.Fatalf("assertion %d: %v flags %#x counter %d after %d", i, st, flags, ctr, last)
		}
		last = ctr
		used := meter.Snapshot().Sub(before)
		t.Logf("getAssertion TPM commands: %s", used)
		// The credential ID's tag proves it ours before the user is
		// asked: a warm assertion is Load, Sign, FlushContext, like U2F's.
		if i == 1 && used.Total() > 3 {
			t.Errorf("warm getAssertion sent %d TPM commands (%s), want at most 3", used.Total(), used)
		}
	}
	// up=false: a silent pre-flight, no prompt, UP clear.
	prompts := s.count()
	st, flags, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("silent")), c, map[string]bool{"up": false})
	if st != ctap2.OK || flags&ctap2.FlagUP != 0 || s.count() != prompts {
		t.Fatalf("silent assertion: %v flags %#x, %d prompts", st, flags, s.count()-prompts)
	}
	// Without a replay store the same request signs again (the store is
	// tested in TestCTAP2ReplayRefused).
	s.answers <- nil
	if st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte{1}), c, nil); st != ctap2.OK {
		// no replay guard configured in newToken: the same request signs again
		t.Fatalf("without a replay store: %v", st)
	}
	// Another RP: no credentials, no prompt.
	prompts = s.count()
	if st, _, _ := getAssertion(t, a, "evil.example", sha256.Sum256([]byte("x")), c, nil); st != ctap2.ErrNoCredentials || s.count() != prompts {
		t.Fatalf("credential for another RP: %v", st)
	}
	// A tampered credential ID: the TPM refuses it before anyone is asked.
	bad := madeCredential{id: append([]byte(nil), c.id...), pub: c.pub}
	bad.id[len(bad.id)-1] ^= 1
	if st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("x")), bad, nil); st != ctap2.ErrNoCredentials || s.count() != prompts {
		t.Fatalf("tampered credential: %v, %d prompts", st, s.count()-prompts)
	}
	// Denied presence.
	s.answers <- presence.ErrDenied
	if st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("d")), c, nil); st != ctap2.ErrOperationDenied {
		t.Fatalf("denied: %v", st)
	}
	// Locked: refused without asking.
	a.Lock()
	prompts = s.count()
	if st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("l")), c, nil); st != ctap2.ErrOperationDenied || s.count() != prompts {
		t.Fatalf("locked: %v", st)
	}
	a.Unlock()
	// Excluded: the user confirms, then CREDENTIAL_EXCLUDED.
	s.answers <- nil
	st, _ = call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{5: []map[string]any{{"type": "public-key", "id": c.id}}}))
	if st != ctap2.ErrCredentialExcluded {
		t.Fatalf("excluded: %v", st)
	}
}

func TestCTAP2Errors(t *testing.T) {
	a, _ := newToken(t, presence.Always{})
	cases := []struct {
		name string
		msg  []byte
		want ctap2.Status
	}{
		{"empty", nil, ctap2.ErrInvalidLength},
		{"unknown command", []byte{0x55}, ctap2.ErrInvalidCommand},
		{"truncated CBOR", []byte{ctap2.CmdMakeCredential, 0xa4, 0x01}, ctap2.ErrInvalidCBOR},
		{"not a map", []byte{ctap2.CmdMakeCredential, 0x01}, ctap2.ErrCBORUnexpectedType},
		{"unsorted keys", []byte{ctap2.CmdGetAssertion, 0xa2, 0x02, 0x41, 0x00, 0x01, 0x61, 0x61}, ctap2.ErrInvalidCBOR},
		{"non-shortest int", []byte{ctap2.CmdGetAssertion, 0xa2, 0x18, 0x01, 0x61, 0x61, 0x02, 0x41, 0x00}, ctap2.ErrInvalidCBOR},
		{"indefinite map", []byte{ctap2.CmdGetAssertion, 0xbf, 0x01, 0x61, 0x61, 0xff}, ctap2.ErrInvalidCBOR},
		{"trailing bytes", append(mustMarshal(map[int]any{1: "a", 2: []byte{0}}), 0), ctap2.ErrInvalidCBOR},
	}
	for i := range cases {
		if cases[i].name == "trailing bytes" {
			cases[i].msg = append([]byte{ctap2.CmdGetAssertion}, cases[i].msg...)
		}
	}
	for _, c := range cases {
		if got := a.HandleCBOR(context.Background(), c.msg, nil); len(got) != 1 || ctap2.Status(got[0]) != c.want {
			t.Errorf("%s: %x, want %v", c.name, got, c.want)
		}
	}
	params := []struct {
		name  string
		cmd   byte
		extra map[int]any
		want  ctap2.Status
	}{
		{"no clientDataHash", ctap2.CmdMakeCredential, map[int]any{1: nil}, ctap2.ErrMissingParameter},
		{"no rp", ctap2.CmdMakeCredential, map[int]any{2: nil}, ctap2.ErrMissingParameter},
		{"no user", ctap2.CmdMakeCredential, map[int]any{3: nil}, ctap2.ErrMissingParameter},
		{"no algorithms", ctap2.CmdMakeCredential, map[int]any{4: nil}, ctap2.ErrMissingParameter},
		{"rp is a string", ctap2.CmdMakeCredential, map[int]any{2: "example.org"}, ctap2.ErrCBORUnexpectedType},
		{"clientDataHash is text", ctap2.CmdMakeCredential, map[int]any{1: "abc"}, ctap2.ErrCBORUnexpectedType},
		{"EdDSA only (no TPM here has it)", ctap2.CmdMakeCredential, map[int]any{4: []map[string]any{{"type": "public-key", "alg": -8}}}, ctap2.ErrUnsupportedAlg},
		{"alg without type", ctap2.CmdMakeCredential, map[int]any{4: []map[string]any{{"alg": -7}}}, ctap2.ErrMissingParameter},
		{"rk", ctap2.CmdMakeCredential, map[int]any{7: map[string]bool{"rk": true}}, ctap2.ErrUnsupportedOption},
		{"uv", ctap2.CmdMakeCredential, map[int]any{7: map[string]bool{"uv": true}}, ctap2.ErrInvalidOption},
		{"up false", ctap2.CmdMakeCredential, map[int]any{7: map[string]bool{"up": false}}, ctap2.ErrInvalidOption},
		{"pinUvAuthParam without protocol", ctap2.CmdMakeCredential, map[int]any{8: []byte{}}, ctap2.ErrMissingParameter},
		{"pinUvAuthParam, protocol 1, token without a PIN store", ctap2.CmdMakeCredential, map[int]any{8: make([]byte, 16), 9: 1}, ctap2.ErrInvalidParameter},
		{"user id over 64 bytes", ctap2.CmdMakeCredential, map[int]any{3: map[string]any{"id": make([]byte, 65), "name": "x"}}, ctap2.ErrInvalidLength},
	}
	for _, p := range params {
		st, _ := call(t, a, p.cmd, makeCredParams("example.org", p.extra))
		if st != p.want {
			t.Errorf("%s: %v, want %v", p.name, st, p.want)
		}
	}
	cdh := sha256.Sum256([]byte("c"))
	for _, p := range []struct {
		name   string
		params map[int]any
		want   ctap2.Status
	}{
		{"no rpId", map[int]any{2: cdh[:]}, ctap2.ErrMissingParameter},
		{"no clientDataHash", map[int]any{1: "example.org"}, ctap2.ErrMissingParameter},
		{"no allowList (no discoverable credentials yet)", map[int]any{1: "example.org", 2: cdh[:]}, ctap2.ErrNoCredentials},
		{"rk option", map[int]any{1: "example.org", 2: cdh[:], 5: map[string]bool{"rk": true}}, ctap2.ErrUnsupportedOption},
		{"allowList entry without id", map[int]any{1: "example.org", 2: cdh[:], 3: []map[string]any{{"type": "public-key"}}}, ctap2.ErrMissingParameter},
	} {
		if st, _ := call(t, a, ctap2.CmdGetAssertion, p.params); st != p.want {
			t.Errorf("getAssertion %s: %v, want %v", p.name, st, p.want)
		}
	}
}

func mustMarshal(v any) []byte {
	b, err := ctap2.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestU2FCredentialOverCTAP2: a key handle registered over U2F for an
// appID works in CTAP2 getAssertion with that appID as the RP ID, which is
// how clients use WebAuthn's appid extension with a CTAP2 key.
func TestU2FCredentialOverCTAP2(t *testing.T) {
	a, _ := newToken(t, presence.Always{})
	appID := "https://example.org/app-id.json"
	app := sha256.Sum256([]byte(appID))
	r := register(t, a, app, sha256.Sum256([]byte("r")))
	c := madeCredential{id: r.handle, pub: r.pub}
	if st, flags, _ := getAssertion(t, a, appID, sha256.Sum256([]byte("x")), c, nil); st != ctap2.OK || flags&ctap2.FlagUP == 0 {
		t.Fatalf("U2F credential over CTAP2: %v", st)
	}
}

func TestCTAP2ReplayRefused(t *testing.T) {
	meter := tpmtestSimulatorEngine(t)
	guard := &memoryReplay{seen: map[[32]byte]bool{}}
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: meter}, Presence: presence.Always{}, Replay: guard})
	defer a.Close()
	c := makeCredential(t, a, "example.org")
	cdh := sha256.Sum256([]byte("once"))
	if st, _, _ := getAssertion(t, a, "example.org", cdh, c, nil); st != ctap2.OK {
		t.Fatal(st)
	}
	if st, _, _ := getAssertion(t, a, "example.org", cdh, c, nil); st != ctap2.ErrOperationDenied {
		t.Fatalf("replayed getAssertion: %v, want OPERATION_DENIED", st)
	}
	// A silent pre-flight of the same request is neither refused nor recorded.
	if st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("pre")), c, map[string]bool{"up": false}); st != ctap2.OK {
		t.Fatal(st)
	}
	if st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("pre")), c, nil); st != ctap2.OK {
		t.Fatalf("the real request after its silent pre-flight: %v", st)
	}
}

func tpmtestSimulatorEngine(t *testing.T) *tpm.Engine {
	return tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
}

func TestCTAP2Reset(t *testing.T) {
	e := tpmtestSimulatorEngine(t)
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	resets := 0
	s := &scripted{answers: make(chan error, 8)}
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: s, Resident: store, Now: clock,
		Reset: func() error {
			resets++
			if _, err := e.Reset(); err != nil {
				return err
			}
			secret, _, err := e.Seal()
			if err != nil {
				return err
			}
			return store.Reset(secret)
		}})
	defer a.Close()
	s.answers <- nil
	c := makeCredential(t, a, "example.org")
	s.answers <- nil
	st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("passkeys.example", map[int]any{7: map[string]bool{"rk": true}}))
	if st != ctap2.OK || store.Remaining() != 9 {
		t.Fatalf("resident credential: %v", st)
	}
	// Too late: more than 10 s after power-up.
	now = now.Add(11 * time.Second)
	if st, _ := call(t, a, ctap2.CmdReset, nil); st != ctap2.ErrNotAllowed || resets != 0 {
		t.Fatalf("late reset: %v", st)
	}
	// A re-plug opens the window again; the user says no.
	a.PowerCycle()
	s.answers <- presence.ErrDenied
	if st, _ := call(t, a, ctap2.CmdReset, nil); st != ctap2.ErrOperationDenied || resets != 0 {
		t.Fatalf("denied reset: %v", st)
	}
	s.answers <- nil
	if st, _ := call(t, a, ctap2.CmdReset, nil); st != ctap2.OK || resets != 1 {
		t.Fatalf("reset: %v", st)
	}
	if store.Remaining() != 10 {
		t.Fatal("resident credentials survived the reset")
	}
	if st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte("after")), c, nil); st != ctap2.ErrNoCredentials {
		t.Fatalf("a credential from before the reset: %v", st)
	}
}
