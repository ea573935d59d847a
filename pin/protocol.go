package pin

// This file holds the PIN/UV auth protocols of CTAP 2.1 (section 6.5.6,
// "PIN/UV Auth Protocol One", and 6.5.7, "PIN/UV Auth Protocol Two"): the
// key agreement by which platform and token obtain a shared secret, the
// encryption of PINs and tokens under it, and the MAC with which the
// platform proves it holds a pinUvAuthToken. Everything here is pure
// crypto over byte slices; the CBOR and the command logic live in package
// token.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
)

var (
	// ErrBadKeyAgreement: the platform's public key is not a point on
	// P-256 (or its coordinates are not 32 bytes each). The token answers
	// CTAP1_ERR_INVALID_PARAMETER.
	ErrBadKeyAgreement = errors.New("pin: platform key agreement key is not a valid P-256 point")
	// ErrBadCiphertext: a ciphertext whose length the protocol cannot
	// have produced.
	ErrBadCiphertext = errors.New("pin: ciphertext length is invalid for the PIN/UV auth protocol")
	// ErrBadPlaintext: a plaintext that is not a non-zero multiple of the
	// AES block size; the protocols do not pad.
	ErrBadPlaintext = errors.New("pin: plaintext length is not a non-zero multiple of 16")
	// ErrBadSharedSecret: a shared secret of the wrong length for the
	// protocol (32 bytes for one, 64 for two), e.g. one derived for the
	// other protocol.
	ErrBadSharedSecret = errors.New("pin: shared secret length is invalid for the PIN/UV auth protocol")
	// ErrBadProtocol: SharedSecret was asked for a protocol other than
	// one or two.
	ErrBadProtocol = errors.New("pin: unsupported PIN/UV auth protocol")
	// ErrNoKeyAgreement: a KeyAgreement not made by NewKeyAgreement.
	ErrNoKeyAgreement = errors.New("pin: key agreement key not initialized")
)

// Sizes fixed by the protocols.
const (
	// CoordinateSize is the length of a P-256 coordinate in a COSE_Key.
	CoordinateSize = 32
	// TokenSize is the length of the pinUvAuthToken this token issues.
	// Protocol one allows 16 or 32 bytes, protocol two requires 32; one
	// size serves both.
	TokenSize = 32
	// V1MACSize is the length of a protocol one pinUvAuthParam: HMAC-SHA-256
	// truncated to 16 bytes.
	V1MACSize = 16
	// V2MACSize is the length of a protocol two pinUvAuthParam: the whole
	// HMAC-SHA-256.
	V2MACSize = 32
	// V1SharedSecretSize is SHA-256(Z.x).
	V1SharedSecretSize = 32
	// V2SharedSecretSize is the HMAC key followed by the AES key.
	V2SharedSecretSize = 64
)

// HKDF info strings of protocol two (CTAP 2.1 section 6.5.7, kdf).
const (
	hkdfInfoHMAC = "CTAP2 HMAC key"
	hkdfInfoAES  = "CTAP2 AES key"
)

// Protocol is a PIN/UV auth protocol (1 or 2). The two differ in how the
// shared secret is derived, whether encryption uses a random IV, and how
// much of the HMAC is sent; the token keeps one Protocol per request,
// chosen by the request's pinUvAuthProtocol parameter.
type Protocol interface {
	// Version is the pinUvAuthProtocol number: 1 or 2.
	Version() int
	// Encrypt encrypts plaintext (a non-zero multiple of 16 bytes) under
	// the shared secret as the protocol defines: protocol one with a zero
	// IV, protocol two with a random IV prepended to the result.
	Encrypt(shared, plaintext []byte) ([]byte, error)
	// Decrypt reverses Encrypt. A ciphertext of a length Encrypt cannot
	// produce is ErrBadCiphertext; CBC without padding cannot detect a
	// wrong key, so callers check the plaintext (pinHashEnc, Unpad).
	Decrypt(shared, ciphertext []byte) ([]byte, error)
	// Authenticate returns the protocol's MAC of msg under key: the first
	// 16 bytes of HMAC-SHA-256 for protocol one, all 32 for protocol two.
	// For protocol two a 64-byte key is a shared secret and only its HMAC
	// key half (the first 32 bytes) is used; any other key (a
	// pinUvAuthToken) is used whole.
	Authenticate(key, msg []byte) []byte
	// Verify checks mac against Authenticate(key, msg) in constant time. A
	// MAC of the wrong length is false, never a prefix comparison: a
	// truncated MAC would otherwise be easier to guess.
	Verify(key, msg, mac []byte) bool
}

// ProtocolByVersion returns protocol 1 or 2; any other version is not
// supported (false), and the token answers CTAP1_ERR_INVALID_PARAMETER.
func ProtocolByVersion(v int) (Protocol, bool) {
	switch v {
	case 1:
		return protocolOne{}, true
	case 2:
		return protocolTwo{}, true
	}
	return nil, false
}

// NewPinUvAuthToken returns a fresh random pinUvAuthToken of TokenSize
// bytes. The token makes a new one at every power-up and whenever
// permissions change, so that a leaked token does not outlive its session.
func NewPinUvAuthToken() ([]byte, error) {
	t := make([]byte, TokenSize)
	if _, err := rand.Read(t); err != nil {
		return nil, err
	}
	return t, nil
}

// protocolOne is CTAP 2.1 section 6.5.6: the CTAP 2.0 protocol.
type protocolOne struct{}

func (protocolOne) Version() int { return 1 }

// Encrypt uses a zero IV, as protocol one defines. That is sound only
// because the key is fresh for every key agreement and each plaintext
// (a PIN hash, a padded PIN, a token) is encrypted once under it.
func (protocolOne) Encrypt(shared, plaintext []byte) ([]byte, error) {
	if len(shared) != V1SharedSecretSize {
		return nil, ErrBadSharedSecret
	}
	if !blockMultiple(plaintext, 1) {
		return nil, ErrBadPlaintext
	}
	var iv [aes.BlockSize]byte
	return cbc(shared, iv[:], plaintext, true)
}

func (protocolOne) Decrypt(shared, ciphertext []byte) ([]byte, error) {
	if len(shared) != V1SharedSecretSize {
		return nil, ErrBadSharedSecret
	}
	if !blockMultiple(ciphertext, 1) {
		return nil, ErrBadCiphertext
	}
	var iv [aes.BlockSize]byte
	return cbc(shared, iv[:], ciphertext, false)
}

func (protocolOne) Authenticate(key, msg []byte) []byte {
	return mac(key, msg)[:V1MACSize]
}

func (p protocolOne) Verify(key, msg, m []byte) bool {
	if len(m) != V1MACSize {
		return false
	}
	return hmac.Equal(p.Authenticate(key, msg), m)
}

// protocolTwo is CTAP 2.1 section 6.5.7: separate HMAC and AES keys from
// HKDF, a random IV, and the untruncated HMAC.
type protocolTwo struct{}

func (protocolTwo) Version() int { return 2 }

func (protocolTwo) Encrypt(shared, plaintext []byte) ([]byte, error) {
	if len(shared) != V2SharedSecretSize {
		return nil, ErrBadSharedSecret
	}
	if !blockMultiple(plaintext, 1) {
		return nil, ErrBadPlaintext
	}
	var iv [aes.BlockSize]byte
	if _, err := rand.Read(iv[:]); err != nil {
		return nil, err
	}
	ct, err := cbc(shared[32:], iv[:], plaintext, true)
	if err != nil {
		return nil, err
	}
	return append(iv[:], ct...), nil
}

// Decrypt takes iv || ct: at least one block of IV and one of ciphertext.
func (protocolTwo) Decrypt(shared, ciphertext []byte) ([]byte, error) {
	if len(shared) != V2SharedSecretSize {
		return nil, ErrBadSharedSecret
	}
	if !blockMultiple(ciphertext, 2) {
		return nil, ErrBadCiphertext
	}
	iv, ct := ciphertext[:aes.BlockSize], ciphertext[aes.BlockSize:]
	return cbc(shared[32:], iv, ct, false)
}

func (protocolTwo) Authenticate(key, msg []byte) []byte {
	if len(key) == V2SharedSecretSize {
		key = key[:32] // the HMAC key half of a shared secret
	}
	return mac(key, msg)
}

func (p protocolTwo) Verify(key, msg, m []byte) bool {
	if len(m) != V2MACSize {
		return false
	}
	return hmac.Equal(p.Authenticate(key, msg), m)
}

// blockMultiple says whether b is a multiple of the AES block size and at
// least minBlocks blocks long.
func blockMultiple(b []byte, minBlocks int) bool {
	return len(b) >= minBlocks*aes.BlockSize && len(b)%aes.BlockSize == 0
}

// cbc runs AES-256-CBC without padding; the caller has checked that in is
// a whole number of blocks and key is 32 bytes.
func cbc(key, iv, in []byte, encrypt bool) ([]byte, error) {
	if len(key) != 32 {
		return nil, ErrBadSharedSecret // AES-256 only, never AES-128 by accident
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(in))
	if encrypt {
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, in)
	} else {
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, in)
	}
	return out, nil
}

func mac(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}

// KeyAgreement is the authenticator's ephemeral P-256 key, reported by
// getKeyAgreement. It is meant to be short-lived: the token replaces it at
// power-up and after a wrong PIN (the specification's regenerate), so that
// a shared secret does not outlive its use.
type KeyAgreement struct {
	priv *ecdh.PrivateKey
}

// NewKeyAgreement generates a fresh key agreement key.
func NewKeyAgreement() (*KeyAgreement, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &KeyAgreement{priv: priv}, nil
}

// PublicXY returns the public key's coordinates, 32 bytes each, for the
// COSE_Key {1: 2, 3: -25, -1: 1, -2: x, -3: y}. A KeyAgreement not made by
// NewKeyAgreement has none (nil, nil).
func (k *KeyAgreement) PublicXY() (x, y []byte) {
	if k == nil || k.priv == nil {
		return nil, nil
	}
	b := k.priv.PublicKey().Bytes() // 0x04 || x || y
	return b[1 : 1+CoordinateSize], b[1+CoordinateSize:]
}

// SharedSecret runs ECDH with the platform's public key (x, y from its
// COSE_Key) and derives p's shared secret from the x coordinate Z of the
// shared point: for protocol one SHA-256(Z), 32 bytes; for protocol two
// HKDF-SHA-256 with a zero salt, once with info "CTAP2 HMAC key" and once
// with "CTAP2 AES key", 64 bytes. A point that is not on P-256 (including
// the all-zero encoding some platforms send for "no key") is
// ErrBadKeyAgreement: ECDH with an invalid point can leak the private key.
func (k *KeyAgreement) SharedSecret(p Protocol, x, y []byte) ([]byte, error) {
	if k == nil || k.priv == nil {
		return nil, ErrNoKeyAgreement
	}
	if p == nil {
		return nil, ErrBadProtocol
	}
	v := p.Version()
	if v != 1 && v != 2 {
		return nil, ErrBadProtocol
	}
	if len(x) != CoordinateSize || len(y) != CoordinateSize {
		return nil, ErrBadKeyAgreement
	}
	enc := make([]byte, 0, 1+2*CoordinateSize)
	enc = append(enc, 4) // SEC 1 uncompressed point
	enc = append(enc, x...)
	enc = append(enc, y...)
	pub, err := ecdh.P256().NewPublicKey(enc) // checks the point is on the curve
	if err != nil {
		return nil, ErrBadKeyAgreement
	}
	z, err := k.priv.ECDH(pub)
	if err != nil {
		return nil, ErrBadKeyAgreement
	}
	defer clear(z)
	if v == 1 {
		sum := sha256.Sum256(z)
		out := make([]byte, V1SharedSecretSize)
		copy(out, sum[:])
		clear(sum[:])
		return out, nil
	}
	salt := make([]byte, 32)
	hmacKey, err := hkdf.Key(sha256.New, z, salt, hkdfInfoHMAC, 32)
	if err != nil {
		return nil, err
	}
	aesKey, err := hkdf.Key(sha256.New, z, salt, hkdfInfoAES, 32)
	if err != nil {
		clear(hmacKey)
		return nil, err
	}
	out := make([]byte, 0, V2SharedSecretSize)
	out = append(out, hmacKey...)
	out = append(out, aesKey...)
	clear(hmacKey)
	clear(aesKey)
	return out, nil
}
