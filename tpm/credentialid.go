package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// Credential IDs.
//
// Version 2 (made since the credential carries its own policy; all
// integers big-endian):
//
//	0      1 byte   version (2)
//	1      1 byte   policy: bits 0-1 credProtect level (0: none, 1-3),
//	                bit 2 discoverable, bit 3 thirdPartyPayment (CTAP 2.2
//	                section 12.9); other bits zero
//	2      1 byte   algorithm (algorithms.go: 1 ES256, 2 ES384, 3 ES512,
//	                4 RS256, 5 PS256)
//	3      k bytes  the public key: X then Y (ECC, each the curve's
//	                size), or the RSA-2048 modulus (the exponent is 65537)
//	3+k    m bytes  TPM2B_PRIVATE contents: the key, encrypted and
//	                integrity-protected by the storage primary
//	3+k+m  16 bytes tag: HMAC-SHA-256(idKey, label | rpIdHash | bytes 0..3+k+m)
//
// 211 bytes for P-256, within the 255 a U2F key handle may have (U2F
// keys are always P-256); RSA IDs are about 500 bytes (swtpm), 1009 on
// the reference simulator, whose RSA private blob carries every CRT value. The
// policy byte and algorithm are bound twice. The tag, under a key only this
// installation's TPM can derive (deriveIDKey), answers "is this ID ours,
// for this RP?" exactly and without a TPM command: an ID of another
// installation, of this one before a reset, or for another RP fails it. And
// the key's authPolicy (bindingV2) covers the RP and the policy byte inside
// the public area, which the private blob's integrity HMAC covers: even
// with the tag key, nobody can lower a credential's credProtect or move it
// to another RP without TPM2_Load refusing it. The public area is not
// stored: it is our template with that binding and the point, rebuilt
// byte for byte (createLoaded checks that it round-trips).
//
// Version 1 (made before; still accepted, with the semantics it had):
//
//	0      1 byte   version (1)
//	1      2 bytes  size n of the TPMT_PUBLIC that follows
//	3      n bytes  TPMT_PUBLIC of the credential key
//	3+n    2 bytes  size m of the TPM2B_PRIVATE contents that follow
//	5+n    m bytes  the private blob
//
// A version-1 ID carries no policy and no tag: its RP binding can be
// compared without the TPM, but only TPM2_Load tells ours from another
// installation's.
const (
	credentialV1 = 1
	credentialV2 = 2

	v2HeaderSize = 3
	v2TagSize    = 16
)

// MaxCredentialIDLength bounds what we accept before parsing (getInfo's
// maxCredentialIdLength): WebAuthn's limit on credential IDs, which an
// RSA-2048 ID stays within on every TPM we know.
const MaxCredentialIDLength = 1023

// Policy is what a credential ID says about how its credential may be used.
type Policy struct {
	// CredProtect is the credProtect level (CTAP 2.1 section 12.1): 0 when
	// the extension was not asked for, else 1 to 3.
	CredProtect uint8
	// Discoverable: a resident credential, which must still be in the
	// credential store to be used.
	Discoverable bool
	// ThirdPartyPayment: registered with the thirdPartyPayment extension
	// (CTAP 2.2 section 12.9), bound in the TPM like credProtect so no
	// file can add or remove it.
	ThirdPartyPayment bool
}

func (p Policy) byte() (byte, error) {
	if p.CredProtect > 3 {
		return 0, errors.New("tpm: credProtect level out of range")
	}
	b := p.CredProtect
	if p.Discoverable {
		b |= 1 << 2
	}
	if p.ThirdPartyPayment {
		b |= 1 << 3
	}
	return b, nil
}

func policyFromByte(b byte) (Policy, bool) {
	if b&^0x0f != 0 {
		return Policy{}, false
	}
	return Policy{CredProtect: b & 3, Discoverable: b&(1<<2) != 0, ThirdPartyPayment: b&(1<<3) != 0}, true
}

// CredentialInfo is what a credential ID says without the TPM.
type CredentialInfo struct {
	Policy Policy
	// Legacy: a version-1 ID. Its policy is unknown here (the zero value),
	// and only the TPM can tell whether it is ours.
	Legacy bool
}

// Binding returns the authPolicy that tied a version-1 credential key to
// one relying party (rpIdHash for CTAP2, the appID hash for U2F). It is
// never satisfied as a policy: the key is used through its (empty)
// authValue; the field only carries the binding inside the TPM-protected
// public area.
func Binding(rp [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("tpm-u2f credential binding v1\x00"))
	h.Write(rp[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// bindingV2 is Binding for version-2 keys: the RP, the policy byte and
// the algorithm.
func bindingV2(rp [32]byte, policy, alg byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("tpm-u2f credential binding v2\x00"))
	h.Write(rp[:])
	h.Write([]byte{policy, alg})
	var out [32]byte
	h.Sum(out[:0])
	return out
}

var credentialAttributes = tpm2.TPMAObject{
	FixedTPM:            true,
	FixedParent:         true,
	SensitiveDataOrigin: true,
	UserWithAuth:        true,
	NoDA:                true, // a failed HMAC is a session fault, never a lockout step
	SignEncrypt:         true,
}

// credentialTemplate is the template of version-1 keys, kept to parse
// their IDs (and, in tests, to make them).
func credentialTemplate(rp [32]byte) tpm2.TPMTPublic {
	return keyTypes[0].template(Binding(rp), nil)
}

// credential is a parsed credential ID.
type credential struct {
	public  []byte // TPMT_PUBLIC
	private []byte // TPM2B_PRIVATE contents
	kt      *keyType
	pub     crypto.PublicKey
	info    CredentialInfo
}

// publicLayout is the version-1 template marshalled with a zero binding
// and a zero point. Every version-1 public area has exactly this layout; a
// credential's public area must equal it except for the binding (which
// must be rp's) and the point, so checking one is a byte comparison — no
// general TPM structure decoder ever sees untrusted bytes.
var publicLayout = tpm2.Marshal(credentialTemplate([32]byte{}))

const (
	policyOffset = 2 + 2 + 4 + 2 // type, nameAlg, objectAttributes, authPolicy size
	pointSize    = 2 + 32 + 2 + 32
)

// publicArea is tpm2.Marshal(kt.template(binding, unique)), built by
// patching the key type's fixed layout: go-tpm's reflection-based
// marshalling of the template cost more than everything else a warm
// signature does outside the TPM (bench/e2e's profile; TestPublicArea
// checks the two agree for every key type). The authPolicy sits at
// policyOffset in every layout, and the public key bytes end it: X and Y
// each after a 2-byte size for ECC, the modulus after one for RSA.
func (kt *keyType) publicArea(binding [32]byte, unique []byte) []byte {
	layout := kt.layout()
	out := append(make([]byte, 0, len(layout)), layout...)
	copy(out[policyOffset:], binding[:])
	if kt.isRSA() {
		copy(out[len(out)-len(unique):], unique)
		return out
	}
	c := kt.coord
	copy(out[len(out)-2*c-2:], unique[:c])
	copy(out[len(out)-c:], unique[c:])
	return out
}

// layouts are the key types' templates marshalled with a zero binding and
// a zero public key, made once.
var layouts = func() map[byte][]byte {
	m := map[byte][]byte{}
	for i := range keyTypes {
		m[keyTypes[i].idByte] = tpm2.Marshal(keyTypes[i].template([32]byte{}, nil))
	}
	return m
}()

func (kt *keyType) layout() []byte { return layouts[kt.idByte] }

// parseCredentialV1 checks a version-1 credential ID against rp without
// the TPM. Every failure is ErrForeignCredential.
func parseCredentialV1(id []byte, rp [32]byte) (*credential, error) {
	if len(id) < 5 || len(id) > MaxCredentialIDLength || id[0] != credentialV1 {
		return nil, ErrForeignCredential
	}
	n := int(binary.BigEndian.Uint16(id[1:3]))
	if 3+n+2 > len(id) {
		return nil, ErrForeignCredential
	}
	m := int(binary.BigEndian.Uint16(id[3+n : 5+n]))
	if 5+n+m != len(id) || m == 0 {
		return nil, ErrForeignCredential
	}
	c := &credential{public: id[3 : 3+n], private: id[5+n:], kt: &keyTypes[0], info: CredentialInfo{Legacy: true}}
	pub := c.public
	if len(pub) != len(publicLayout) {
		return nil, ErrForeignCredential
	}
	binding := Binding(rp)
	point := len(pub) - pointSize
	if !bytes.Equal(pub[:policyOffset], publicLayout[:policyOffset]) ||
		!bytes.Equal(pub[policyOffset:policyOffset+32], binding[:]) ||
		!bytes.Equal(pub[policyOffset+32:point], publicLayout[policyOffset+32:point]) ||
		pub[point] != 0 || pub[point+1] != 32 || pub[point+34] != 0 || pub[point+35] != 32 {
		return nil, ErrForeignCredential
	}
	var err error
	if c.pub, err = p256Point(pub[point+2:point+34], pub[point+36:]); err != nil {
		return nil, ErrForeignCredential
	}
	return c, nil
}

// v1ID encodes a version-1 credential ID (tests make legacy IDs with it).
func (c *credential) v1ID() []byte {
	out := make([]byte, 0, 5+len(c.public)+len(c.private))
	out = append(out, credentialV1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(c.public)))
	out = append(out, c.public...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(c.private)))
	return append(out, c.private...)
}

func p256Point(x, y []byte) (*ecdsa.PublicKey, error) {
	raw := append(append([]byte{4}, x...), y...)
	if _, err := ecdh.P256().NewPublicKey(raw); err != nil {
		return nil, errors.New("tpm: point not on P-256")
	}
	return &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}, nil
}

// idTag is the version-2 tag of body (the ID without its tag) for rp.
func idTag(idKey *[32]byte, rp [32]byte, body []byte) []byte {
	m := hmac.New(sha256.New, idKey[:])
	m.Write([]byte("tpm-u2f credential id v2\x00"))
	m.Write(rp[:])
	m.Write(body)
	return m.Sum(nil)[:v2TagSize]
}

// splitV2 checks a version-2 ID's structure (not its tag) and returns its
// key type, policy byte, public key bytes and private blob.
func splitV2(id []byte) (kt *keyType, policy byte, unique, private []byte, ok bool) {
	if len(id) <= v2HeaderSize+v2TagSize || len(id) > MaxCredentialIDLength || id[0] != credentialV2 {
		return nil, 0, nil, nil, false
	}
	kt, known := keyTypeByIDByte(id[2])
	if _, valid := policyFromByte(id[1]); !known || !valid {
		return nil, 0, nil, nil, false
	}
	k := kt.uniqueSize()
	if len(id) <= v2HeaderSize+k+v2TagSize {
		return nil, 0, nil, nil, false
	}
	return kt, id[1], id[v2HeaderSize : v2HeaderSize+k], id[v2HeaderSize+k : len(id)-v2TagSize], true
}

// parseCredentialV2 checks a version-2 credential ID against rp and this
// installation's tag key, without the TPM. Every failure is
// ErrForeignCredential.
func parseCredentialV2(id []byte, rp [32]byte, idKey *[32]byte) (*credential, error) {
	kt, policy, unique, private, ok := splitV2(id)
	if !ok || idKey == nil {
		return nil, ErrForeignCredential
	}
	body := id[:len(id)-v2TagSize]
	if !hmac.Equal(idTag(idKey, rp, body), id[len(body):]) {
		return nil, ErrForeignCredential
	}
	pub, err := kt.publicKey(unique)
	if err != nil {
		return nil, ErrForeignCredential
	}
	p, _ := policyFromByte(policy)
	return &credential{
		public:  kt.publicArea(bindingV2(rp, policy, kt.idByte), unique),
		private: private,
		kt:      kt,
		pub:     pub,
		info:    CredentialInfo{Policy: p},
	}, nil
}

// v2ID encodes a version-2 credential ID for a key made from
// kt.template(bindingV2(rp, policy, kt.idByte), nil).
func v2ID(idKey *[32]byte, rp [32]byte, policy byte, kt *keyType, unique, private []byte) []byte {
	out := make([]byte, 0, v2HeaderSize+len(unique)+len(private)+v2TagSize)
	out = append(out, credentialV2, policy, kt.idByte)
	out = append(out, unique...)
	out = append(out, private...)
	return append(out, idTag(idKey, rp, out)...)
}

// CredentialPublicKey returns the public key in a credential ID and its
// algorithm. It checks the ID's structure (and a version-1 ID's RP
// binding) but not whether it is ours: callers use it on IDs they already
// trust, such as those in the credential store.
func CredentialPublicKey(id []byte, rp [32]byte) (crypto.PublicKey, Algorithm, error) {
	if len(id) > 0 && id[0] == credentialV2 {
		kt, _, unique, _, ok := splitV2(id)
		if !ok {
			return nil, 0, ErrForeignCredential
		}
		pub, err := kt.publicKey(unique)
		if err != nil {
			return nil, 0, ErrForeignCredential
		}
		return pub, kt.alg, nil
	}
	c, err := parseCredentialV1(id, rp)
	if err != nil {
		return nil, 0, err
	}
	return c.pub, ES256, nil
}
