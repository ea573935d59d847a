package pin

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

func mustProtocol(t testing.TB, v int) Protocol {
	t.Helper()
	p, ok := ProtocolByVersion(v)
	if !ok {
		t.Fatalf("ProtocolByVersion(%d) not found", v)
	}
	if p.Version() != v {
		t.Fatalf("ProtocolByVersion(%d).Version() = %d", v, p.Version())
	}
	return p
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProtocolByVersion(t *testing.T) {
	mustProtocol(t, 1)
	mustProtocol(t, 2)
	for _, v := range []int{-1, 0, 3, 256} {
		if p, ok := ProtocolByVersion(v); ok || p != nil {
			t.Errorf("ProtocolByVersion(%d) = %v, %v; want nil, false", v, p, ok)
		}
	}
}

// platform is the client side of the key agreement, written with
// crypto/ecdh directly so that it shares no code with KeyAgreement.
type platform struct {
	priv *ecdh.PrivateKey
}

func newPlatform(t testing.TB) *platform {
	t.Helper()
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &platform{priv: priv}
}

func (p *platform) xy() (x, y []byte) {
	b := p.priv.PublicKey().Bytes()
	return b[1:33], b[33:65]
}

// z is the platform's ECDH x coordinate with the authenticator's key.
func (p *platform) z(t testing.TB, ax, ay []byte) []byte {
	t.Helper()
	pub, err := ecdh.P256().NewPublicKey(append(append([]byte{4}, ax...), ay...))
	if err != nil {
		t.Fatalf("authenticator's public key: %v", err)
	}
	z, err := p.priv.ECDH(pub)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// hkdfByHand is RFC 5869 HKDF-SHA-256 for outputs of at most one block,
// written with crypto/hmac so that it does not share crypto/hkdf with the
// code under test.
func hkdfByHand(salt, ikm []byte, info string) []byte {
	ext := hmac.New(sha256.New, salt)
	ext.Write(ikm)
	prk := ext.Sum(nil)
	exp := hmac.New(sha256.New, prk)
	exp.Write([]byte(info))
	exp.Write([]byte{1})
	return exp.Sum(nil)
}

func TestSharedSecretBothSides(t *testing.T) {
	k, err := NewKeyAgreement()
	if err != nil {
		t.Fatal(err)
	}
	ax, ay := k.PublicXY()
	if len(ax) != 32 || len(ay) != 32 {
		t.Fatalf("PublicXY lengths %d, %d; want 32, 32", len(ax), len(ay))
	}
	plat := newPlatform(t)
	px, py := plat.xy()
	z := plat.z(t, ax, ay)

	p1 := mustProtocol(t, 1)
	s1, err := k.SharedSecret(p1, px, py)
	if err != nil {
		t.Fatal(err)
	}
	want1 := sha256.Sum256(z)
	if !bytes.Equal(s1, want1[:]) {
		t.Errorf("v1 shared secret %x, platform derived %x", s1, want1)
	}

	p2 := mustProtocol(t, 2)
	s2, err := k.SharedSecret(p2, px, py)
	if err != nil {
		t.Fatal(err)
	}
	salt := make([]byte, 32)
	want2 := append(hkdfByHand(salt, z, "CTAP2 HMAC key"), hkdfByHand(salt, z, "CTAP2 AES key")...)
	if !bytes.Equal(s2, want2) {
		t.Errorf("v2 shared secret\n %x\nplatform derived\n %x", s2, want2)
	}
	if bytes.Equal(s2[:32], s2[32:]) {
		t.Error("v2 HMAC and AES keys are equal")
	}

	// What the platform encrypts, the authenticator decrypts, and the
	// other way round; the platform side here is plain crypto/cipher.
	pin := pad("1234", PaddedLength)
	var zeroIV [16]byte
	ct1 := cbcByHand(t, want1[:], zeroIV[:], pin)
	got, err := p1.Decrypt(s1, ct1)
	if err != nil || !bytes.Equal(got, pin) {
		t.Errorf("v1 Decrypt of platform ciphertext = %x, %v", got, err)
	}
	iv := bytes.Repeat([]byte{0xa5}, 16)
	ct2 := append(append([]byte{}, iv...), cbcByHand(t, want2[32:], iv, pin)...)
	got, err = p2.Decrypt(s2, ct2)
	if err != nil || !bytes.Equal(got, pin) {
		t.Errorf("v2 Decrypt of platform ciphertext = %x, %v", got, err)
	}
	tok, err := NewPinUvAuthToken()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := p2.Encrypt(s2, tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != 16+TokenSize {
		t.Fatalf("v2 encrypted token is %d bytes, want %d", len(enc), 16+TokenSize)
	}
	dec := make([]byte, TokenSize)
	block, _ := aes.NewCipher(want2[32:])
	cipher.NewCBCDecrypter(block, enc[:16]).CryptBlocks(dec, enc[16:])
	if !bytes.Equal(dec, tok) {
		t.Error("platform cannot decrypt the v2 encrypted token")
	}

	// The platform's pinUvAuthParam over the shared secret.
	msg := []byte("pinHashEnc || newPinEnc")
	m := hmac.New(sha256.New, want2[:32])
	m.Write(msg)
	if !p2.Verify(s2, msg, m.Sum(nil)) {
		t.Error("v2 Verify rejects the platform's MAC under the HMAC key half")
	}
	m = hmac.New(sha256.New, want1[:])
	m.Write(msg)
	if !p1.Verify(s1, msg, m.Sum(nil)[:16]) {
		t.Error("v1 Verify rejects the platform's MAC")
	}
}

func cbcByHand(t testing.TB, key, iv, pt []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, pt)
	return out
}

// TestKnownAnswers pins the byte-level details against values computed
// with Python's cryptography package (OpenSSL), an implementation
// independent of Go's: fixed scalars SHA-256("authenticator") and
// SHA-256("platform"). The platform's y begins with a zero byte, so
// coordinate encoding is checked too.
func TestKnownAnswers(t *testing.T) {
	priv, err := ecdh.P256().NewPrivateKey(unhex(t, "21c9fca2dceaa54532d8f24fc52960ece739bdc177781dba570998576fe08a52"))
	if err != nil {
		t.Fatal(err)
	}
	k := &KeyAgreement{priv: priv}
	ax, ay := k.PublicXY()
	if hex.EncodeToString(ax) != "07b61d3c424b299408a72ea6a59f153e74a3125b5811716edb32222b46b4f02c" ||
		hex.EncodeToString(ay) != "4d5eb906055fc8ea49ae0c061ab69d66942ffcf77c75c47c1032c9f43fc532b6" {
		t.Errorf("PublicXY = %x, %x", ax, ay)
	}
	px := unhex(t, "f6882701b492e3e25ab005bc12168ecba2bcb0d0e645911e19a78cc735067e80")
	py := unhex(t, "00b25c7137cb2dcfb0d7f5b83314485e64ed592f648934d2198d80ac0275b73b")
	p1, p2 := mustProtocol(t, 1), mustProtocol(t, 2)

	s1, err := k.SharedSecret(p1, px, py)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(s1), "0ecd6a002249d641720e4c3f527477c6244e5accb86cfdfb5aec08816ee04834"; got != want {
		t.Errorf("v1 shared secret %s, want %s", got, want)
	}
	s2, err := k.SharedSecret(p2, px, py)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(s2), "73e4ea91f8c5e0f65dffbb5bfa7cf7279102d4290ffbaad4e8732d870c2506fc"+
		"7652bfa79a120acf2976ceae701eab5a803c76a5e24e96f2df0e27297533c6cb"; got != want {
		t.Errorf("v2 shared secret %s, want %s", got, want)
	}

	pt := make([]byte, 32)
	for i := range pt {
		pt[i] = byte(i)
	}
	ct1, err := p1.Encrypt(s1, pt)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(ct1), "0ea9442b76455c93b3255c7b4509f79fa918d294efbac3c2e86dd06443c9dcdf"; got != want {
		t.Errorf("v1 ciphertext %s, want %s", got, want)
	}
	ct2 := unhex(t, "101112131415161718191a1b1c1d1e1fd099576a5ea00b4b1e674d34c51b31b69985dff3384f8246f807b3c814285687")
	got, err := p2.Decrypt(s2, ct2)
	if err != nil || !bytes.Equal(got, pt) {
		t.Errorf("v2 Decrypt = %x, %v; want %x", got, err, pt)
	}

	msg := append(bytes.Repeat([]byte{0xff}, 32), 0x0d, 0x01)
	if got, want := hex.EncodeToString(p1.Authenticate(s1, msg)), "8b152b5b15c5a9e61822742ad7816dfc"; got != want {
		t.Errorf("v1 MAC %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(p2.Authenticate(s2, msg)), "dfbb7d58ece97898a757e641fc553eedf10a342cf26b69cc88b42826bced9400"; got != want {
		t.Errorf("v2 MAC %s, want %s", got, want)
	}
	// A 32-byte key (a pinUvAuthToken) is used whole: the HMAC key half
	// alone gives the same MAC as the whole shared secret.
	if got := p2.Authenticate(s2[:32], msg); !bytes.Equal(got, p2.Authenticate(s2, msg)) {
		t.Errorf("v2 MAC under the HMAC key half %x differs", got)
	}
}

func TestRoundTrip(t *testing.T) {
	k, err := NewKeyAgreement()
	if err != nil {
		t.Fatal(err)
	}
	px, py := newPlatform(t).xy()
	for _, v := range []int{1, 2} {
		p := mustProtocol(t, v)
		s, err := k.SharedSecret(p, px, py)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{16, 32, 64, 128} {
			pt := bytes.Repeat([]byte{byte(n)}, n)
			ct, err := p.Encrypt(s, pt)
			if err != nil {
				t.Fatalf("v%d Encrypt(%d bytes): %v", v, n, err)
			}
			wantLen := n
			if v == 2 {
				wantLen += 16
			}
			if len(ct) != wantLen {
				t.Errorf("v%d ciphertext of %d bytes is %d bytes, want %d", v, n, len(ct), wantLen)
			}
			got, err := p.Decrypt(s, ct)
			if err != nil || !bytes.Equal(got, pt) {
				t.Errorf("v%d round trip of %d bytes: %x, %v", v, n, got, err)
			}
		}
	}
}

func TestV2RandomIV(t *testing.T) {
	p := mustProtocol(t, 2)
	s := bytes.Repeat([]byte{7}, 64)
	pt := make([]byte, 16)
	a, err := p.Encrypt(s, pt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Encrypt(s, pt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[:16], b[:16]) || bytes.Equal(a, b) {
		t.Error("v2 Encrypt reused its IV")
	}
	// The AES key is the second half: changing the first half does not
	// change the plaintext, changing the second does.
	s2 := bytes.Clone(s)
	s2[0] ^= 1
	if got, err := p.Decrypt(s2, a); err != nil || !bytes.Equal(got, pt) {
		t.Errorf("v2 Decrypt depends on the HMAC key half: %x, %v", got, err)
	}
	s2[40] ^= 1
	if got, err := p.Decrypt(s2, a); err != nil || bytes.Equal(got, pt) {
		t.Errorf("v2 Decrypt ignores the AES key half: %x, %v", got, err)
	}
}

func TestV1ZeroIV(t *testing.T) {
	p := mustProtocol(t, 1)
	s := bytes.Repeat([]byte{9}, 32)
	pt := bytes.Repeat([]byte{1}, 32)
	a, _ := p.Encrypt(s, pt)
	b, _ := p.Encrypt(s, pt)
	if !bytes.Equal(a, b) {
		t.Error("v1 Encrypt is not deterministic (zero IV)")
	}
	var iv [16]byte
	if want := cbcByHand(t, s, iv[:], pt); !bytes.Equal(a, want) {
		t.Errorf("v1 ciphertext %x, want %x", a, want)
	}
}

func TestMAC(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 32)
	msg := []byte("clientDataHash")
	cases := []struct {
		v, size int
	}{{1, 16}, {2, 32}}
	for _, c := range cases {
		p := mustProtocol(t, c.v)
		m := p.Authenticate(key, msg)
		if len(m) != c.size {
			t.Fatalf("v%d MAC is %d bytes, want %d", c.v, len(m), c.size)
		}
		full := hmac.New(sha256.New, key)
		full.Write(msg)
		if want := full.Sum(nil)[:c.size]; !bytes.Equal(m, want) {
			t.Errorf("v%d MAC %x, want %x", c.v, m, want)
		}
		if !p.Verify(key, msg, m) {
			t.Errorf("v%d Verify rejects its own MAC", c.v)
		}
		for i := range len(m) * 8 {
			bad := bytes.Clone(m)
			bad[i/8] ^= 1 << (i % 8)
			if p.Verify(key, msg, bad) {
				t.Fatalf("v%d Verify accepts a MAC with bit %d flipped", c.v, i)
			}
		}
		for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 64} {
			if n == c.size {
				continue
			}
			bad := make([]byte, n)
			copy(bad, full.Sum(nil))
			if p.Verify(key, msg, bad) {
				t.Errorf("v%d Verify accepts a %d-byte MAC", c.v, n)
			}
		}
		if p.Verify(key, []byte("other"), m) {
			t.Errorf("v%d Verify accepts the MAC for another message", c.v)
		}
		if p.Verify(bytes.Repeat([]byte{4}, 32), msg, m) {
			t.Errorf("v%d Verify accepts the MAC under another key", c.v)
		}
	}
}

func TestBadKeyAgreement(t *testing.T) {
	k, err := NewKeyAgreement()
	if err != nil {
		t.Fatal(err)
	}
	px, py := newPlatform(t).xy()
	ax, ay := k.PublicXY()
	zero := make([]byte, 32)
	one := append(make([]byte, 31), 1)
	// The field prime: x = p is not a reduced coordinate.
	prime := unhex(t, "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")
	flippedY := bytes.Clone(py)
	flippedY[31] ^= 1
	// -y: (x, p - y) is on the curve, so it must be accepted.
	negY := unhex(t, "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")
	subBig(negY, py)

	cases := []struct {
		name string
		x, y []byte
		ok   bool
	}{
		{"valid", px, py, true},
		{"valid negated", px, negY, true},
		{"own key", ax, ay, true},
		{"all zero", zero, zero, false},
		{"off curve (1,1)", one, one, false},
		{"y bit flipped", px, flippedY, false},
		{"x = p", prime, py, false},
		{"nil", nil, nil, false},
		{"x 31 bytes", px[1:], py, false},
		{"y 31 bytes", px, py[1:], false},
		{"x 33 bytes", append([]byte{0}, px...), py, false},
		{"y 33 bytes", px, append([]byte{0}, py...), false},
		{"x and y swapped", py, px, false},
	}
	for _, v := range []int{1, 2} {
		p := mustProtocol(t, v)
		for _, c := range cases {
			s, err := k.SharedSecret(p, c.x, c.y)
			if c.ok {
				if err != nil {
					t.Errorf("v%d %s: %v", v, c.name, err)
				}
				continue
			}
			if !errors.Is(err, ErrBadKeyAgreement) || s != nil {
				t.Errorf("v%d %s: %x, %v; want ErrBadKeyAgreement", v, c.name, s, err)
			}
		}
	}

	if _, err := k.SharedSecret(nil, px, py); !errors.Is(err, ErrBadProtocol) {
		t.Errorf("nil protocol: %v", err)
	}
	if _, err := k.SharedSecret(fakeProtocol{}, px, py); !errors.Is(err, ErrBadProtocol) {
		t.Errorf("protocol 3: %v", err)
	}
	var empty KeyAgreement
	if _, err := empty.SharedSecret(mustProtocol(t, 1), px, py); !errors.Is(err, ErrNoKeyAgreement) {
		t.Errorf("zero KeyAgreement: %v", err)
	}
	var nilK *KeyAgreement
	if x, y := nilK.PublicXY(); x != nil || y != nil {
		t.Error("nil KeyAgreement has a public key")
	}
}

// subBig sets a = a - b for 32-byte big-endian a >= b.
func subBig(a, b []byte) {
	borrow := 0
	for i := len(a) - 1; i >= 0; i-- {
		d := int(a[i]) - int(b[i]) - borrow
		borrow = 0
		if d < 0 {
			d += 256
			borrow = 1
		}
		a[i] = byte(d)
	}
}

type fakeProtocol struct{ Protocol }

func (fakeProtocol) Version() int { return 3 }

func TestBadLengths(t *testing.T) {
	p1, p2 := mustProtocol(t, 1), mustProtocol(t, 2)
	s1 := make([]byte, 32)
	s2 := make([]byte, 64)
	for _, n := range []int{0, 1, 15, 17, 31, 33} {
		b := make([]byte, n)
		if _, err := p1.Decrypt(s1, b); !errors.Is(err, ErrBadCiphertext) {
			t.Errorf("v1 Decrypt(%d bytes): %v", n, err)
		}
		if _, err := p1.Encrypt(s1, b); !errors.Is(err, ErrBadPlaintext) {
			t.Errorf("v1 Encrypt(%d bytes): %v", n, err)
		}
		if _, err := p2.Encrypt(s2, b); !errors.Is(err, ErrBadPlaintext) {
			t.Errorf("v2 Encrypt(%d bytes): %v", n, err)
		}
	}
	// v2 needs an IV and at least one block after it.
	for _, n := range []int{0, 1, 15, 16, 17, 31, 33, 47} {
		if _, err := p2.Decrypt(s2, make([]byte, n)); !errors.Is(err, ErrBadCiphertext) {
			t.Errorf("v2 Decrypt(%d bytes): %v", n, err)
		}
	}
	if _, err := p2.Decrypt(s2, make([]byte, 32)); err != nil {
		t.Errorf("v2 Decrypt(32 bytes): %v", err)
	}
	if _, err := p1.Decrypt(s1, make([]byte, 16)); err != nil {
		t.Errorf("v1 Decrypt(16 bytes): %v", err)
	}

	// A shared secret of the other protocol's length, or any other, is an
	// error in both directions.
	block := make([]byte, 32)
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := p1.Encrypt(make([]byte, n), block); !errors.Is(err, ErrBadSharedSecret) {
			t.Errorf("v1 Encrypt with %d-byte secret: %v", n, err)
		}
		if _, err := p1.Decrypt(make([]byte, n), block); !errors.Is(err, ErrBadSharedSecret) {
			t.Errorf("v1 Decrypt with %d-byte secret: %v", n, err)
		}
	}
	for _, n := range []int{0, 16, 32, 48, 63, 65} {
		if _, err := p2.Encrypt(make([]byte, n), block); !errors.Is(err, ErrBadSharedSecret) {
			t.Errorf("v2 Encrypt with %d-byte secret: %v", n, err)
		}
		if _, err := p2.Decrypt(make([]byte, n), block); !errors.Is(err, ErrBadSharedSecret) {
			t.Errorf("v2 Decrypt with %d-byte secret: %v", n, err)
		}
	}
}

func TestNewPinUvAuthToken(t *testing.T) {
	a, err := NewPinUvAuthToken()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewPinUvAuthToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("token lengths %d, %d; want 32", len(a), len(b))
	}
	if bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 32)) {
		t.Error("tokens are not random")
	}
}

func TestKeyAgreementsDiffer(t *testing.T) {
	a, err := NewKeyAgreement()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKeyAgreement()
	if err != nil {
		t.Fatal(err)
	}
	ax, _ := a.PublicXY()
	bx, _ := b.PublicXY()
	if bytes.Equal(ax, bx) {
		t.Error("two key agreement keys are equal")
	}
}
