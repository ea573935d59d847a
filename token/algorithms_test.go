package token_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// coseToPublic parses a COSE_Key as a relying party would.
func coseToPublic(t *testing.T, raw []byte) (crypto.PublicKey, int64) {
	t.Helper()
	var m map[int64]any
	if err := cbor.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	alg, _ := m[3].(int64)
	switch m[1] {
	case uint64(2):
		curve := map[uint64]elliptic.Curve{1: elliptic.P256(), 2: elliptic.P384(), 3: elliptic.P521()}[m[-1].(uint64)]
		return &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(m[-2].([]byte)), Y: new(big.Int).SetBytes(m[-3].([]byte))}, alg
	case uint64(3):
		return &rsa.PublicKey{N: new(big.Int).SetBytes(m[-1].([]byte)), E: int(new(big.Int).SetBytes(m[-2].([]byte)).Int64())}, alg
	}
	t.Fatalf("COSE key type %v", m[1])
	return nil, 0
}

func verifyCOSE(t *testing.T, pub crypto.PublicKey, alg int64, data, sig []byte) {
	t.Helper()
	h := map[int64]crypto.Hash{ctap2.AlgES384: crypto.SHA384, ctap2.AlgES512: crypto.SHA512}[alg]
	if h == 0 {
		h = crypto.SHA256
	}
	w := h.New()
	w.Write(data)
	d := w.Sum(nil)
	var err error
	switch alg {
	case ctap2.AlgRS256:
		err = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), h, d, sig)
	case ctap2.AlgPS256:
		err = rsa.VerifyPSS(pub.(*rsa.PublicKey), h, d, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	default:
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d, sig) {
			t.Fatalf("alg %d: signature does not verify", alg)
		}
	}
	if err != nil {
		t.Fatalf("alg %d: %v", alg, err)
	}
}

// Every algorithm getInfo lists registers (packed self-attestation in
// that algorithm) and signs assertions that verify; the RP's order of
// preference picks among them.
func TestEveryAlgorithmThroughCTAP2(t *testing.T) {
	a, _ := newToken(t, presence.Always{})
	_, body := call(t, a, ctap2.CmdGetInfo, nil)
	var info ctap2.Info
	if err := cbor.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Algorithms) < 5 {
		t.Fatalf("getInfo algorithms %v: the simulator has ES256, ES384, ES512, RS256 and PS256", info.Algorithms)
	}
	for _, p := range info.Algorithms {
		rp := "alg.example"
		// The RP prefers p.Alg, then ES256.
		params := makeCredParams(rp, map[int]any{4: []map[string]any{{"type": "public-key", "alg": p.Alg}, {"type": "public-key", "alg": -7}}})
		st, body := call(t, a, ctap2.CmdMakeCredential, params)
		if st != ctap2.OK {
			t.Fatalf("alg %d: makeCredential %v", p.Alg, st)
		}
		var rsp struct {
			AuthData []byte         `cbor:"2,keyasint"`
			AttStmt  map[string]any `cbor:"3,keyasint"`
		}
		if err := cbor.Unmarshal(body, &rsp); err != nil {
			t.Fatal(err)
		}
		ad := rsp.AuthData
		n := int(binary.BigEndian.Uint16(ad[53:55]))
		id := ad[55 : 55+n]
		var coseRaw cbor.RawMessage
		rest, err := cbor.UnmarshalFirst(ad[55+n:], &coseRaw)
		if err != nil || len(rest) != 0 {
			t.Fatalf("alg %d: credential public key: %v, %d bytes after", p.Alg, err, len(rest))
		}
		pub, alg := coseToPublic(t, coseRaw)
		if alg != p.Alg || rsp.AttStmt["alg"] != p.Alg {
			t.Fatalf("asked for %d, got key %d, attestation %v", p.Alg, alg, rsp.AttStmt["alg"])
		}
		verifyCOSE(t, pub, alg, append(append([]byte(nil), ad...), params[1].([]byte)...), rsp.AttStmt["sig"].([]byte))

		cdh := sha256.Sum256([]byte("assert"))
		st, body = call(t, a, ctap2.CmdGetAssertion, map[int]any{1: rp, 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": id}}})
		if st != ctap2.OK {
			t.Fatalf("alg %d: getAssertion %v", p.Alg, st)
		}
		var as struct {
			AuthData  []byte `cbor:"2,keyasint"`
			Signature []byte `cbor:"3,keyasint"`
		}
		if err := cbor.Unmarshal(body, &as); err != nil {
			t.Fatal(err)
		}
		verifyCOSE(t, pub, alg, append(append([]byte(nil), as.AuthData...), cdh[:]...), as.Signature)
		t.Logf("alg %d: credential ID %d bytes", alg, n)
	}
}

// hmac-secret and credential management work the same for every
// algorithm: the secret is derived from the credential ID, the listing
// carries the credential's own COSE key.
func TestHMACSecretAndCredMgmtForEveryAlgorithm(t *testing.T) {
	a, _ := pinToken(t)
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatalf("setPIN: %v", st)
	}
	salt := bytes.Repeat([]byte{7}, 32)
	for _, alg := range []int64{ctap2.AlgES256, ctap2.AlgES384, ctap2.AlgES512, ctap2.AlgRS256, ctap2.AlgPS256} {
		rp := fmt.Sprintf("alg%d.example", -alg)
		if st := p.getToken("1234", ctap2.PermMakeCredential, rp); st != ctap2.OK {
			t.Fatalf("token: %v", st)
		}
		params := makeCredParams(rp, map[int]any{
			4: []map[string]any{{"type": "public-key", "alg": alg}},
			6: map[string]any{"hmac-secret": true},
			7: map[string]bool{"rk": true},
		})
		params[8] = p.proto.Authenticate(p.token, params[1].([]byte))
		params[9] = p.proto.Version()
		st, body := call(t, a, ctap2.CmdMakeCredential, params)
		if st != ctap2.OK {
			t.Fatalf("alg %d: makeCredential %v", alg, st)
		}
		var mc ctap2.MakeCredentialResponse
		if err := cbor.Unmarshal(body, &mc); err != nil {
			t.Fatal(err)
		}
		n := int(binary.BigEndian.Uint16(mc.AuthData[53:55]))
		id := bytes.Clone(mc.AuthData[55 : 55+n])
		st, out1, _ := p.hmacSecretAssert(rp, id, salt, false)
		_, out2, _ := p.hmacSecretAssert(rp, id, salt, false)
		if st != ctap2.OK || len(out1) != 32 || !bytes.Equal(out1, out2) {
			t.Fatalf("alg %d: hmac-secret %v, %d bytes, stable %v", alg, st, len(out1), bytes.Equal(out1, out2))
		}
		if st := p.getToken("1234", ctap2.PermCredMgmt, ""); st != ctap2.OK {
			t.Fatalf("cm token: %v", st)
		}
		st, rsp := p.credMgmt(ctap2.CredMgmtEnumerateCredsBegin, map[int]any{1: hashOf(rp)})
		if st != ctap2.OK || rsp.CredentialID == nil || !bytes.Equal(rsp.CredentialID.ID, id) {
			t.Fatalf("alg %d: enumerateCredentials %v", alg, st)
		}
		if _, got := coseToPublic(t, rsp.PublicKey); got != alg {
			t.Errorf("alg %d: credential management lists a key of alg %d", alg, got)
		}
	}
}
