package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// Algorithm is a credential signature algorithm, named by its COSE
// identifier (IANA COSE Algorithms registry), as CTAP names them.
type Algorithm int64

// The algorithms a credential key can have, in the order tpm-u2f prefers
// them (getInfo's algorithms list).
const (
	ES256 Algorithm = -7   // ECDSA P-256, SHA-256
	ES384 Algorithm = -35  // ECDSA P-384, SHA-384
	ES512 Algorithm = -36  // ECDSA P-521, SHA-512
	RS256 Algorithm = -257 // RSASSA-PKCS1-v1_5 RSA-2048, SHA-256
	PS256 Algorithm = -37  // RSASSA-PSS RSA-2048, SHA-256 (salt: hash length, RFC 8230)
)

// keyType describes how one Algorithm is made, stored and used in the TPM.
type keyType struct {
	alg    Algorithm
	idByte byte // the algorithm byte of a version-2 credential ID
	hash   crypto.Hash
	// curve is the ECC curve (0 for RSA), coord its coordinate size.
	curve  tpm2.TPMECCCurve
	coord  int
	scheme tpm2.TPMAlgID // ECDSA, RSASSA or RSAPSS
}

var keyTypes = []keyType{
	{alg: ES256, idByte: 1, hash: crypto.SHA256, curve: tpm2.TPMECCNistP256, coord: 32, scheme: tpm2.TPMAlgECDSA},
	{alg: ES384, idByte: 2, hash: crypto.SHA384, curve: tpm2.TPMECCNistP384, coord: 48, scheme: tpm2.TPMAlgECDSA},
	{alg: ES512, idByte: 3, hash: crypto.SHA512, curve: tpm2.TPMECCNistP521, coord: 66, scheme: tpm2.TPMAlgECDSA},
	{alg: RS256, idByte: 4, hash: crypto.SHA256, scheme: tpm2.TPMAlgRSASSA},
	{alg: PS256, idByte: 5, hash: crypto.SHA256, scheme: tpm2.TPMAlgRSAPSS},
}

const rsaBits = 2048

func keyTypeOf(alg Algorithm) (*keyType, bool) {
	for i := range keyTypes {
		if keyTypes[i].alg == alg {
			return &keyTypes[i], true
		}
	}
	return nil, false
}

func keyTypeByIDByte(b byte) (*keyType, bool) {
	for i := range keyTypes {
		if keyTypes[i].idByte == b {
			return &keyTypes[i], true
		}
	}
	return nil, false
}

func (kt *keyType) isRSA() bool { return kt.curve == 0 }

// uniqueSize is how many bytes of a version-2 ID hold the public key.
func (kt *keyType) uniqueSize() int {
	if kt.isRSA() {
		return rsaBits / 8
	}
	return 2 * kt.coord
}

func (kt *keyType) hashAlg() tpm2.TPMAlgID {
	switch kt.hash {
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512
	}
	return tpm2.TPMAlgSHA256
}

// template is the key's public area with authPolicy and, for a key to
// load, its public key (unique; nil for a template to create from).
func (kt *keyType) template(authPolicy [32]byte, unique []byte) tpm2.TPMTPublic {
	if !kt.isRSA() {
		if unique == nil {
			unique = make([]byte, 2*kt.coord)
		}
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: credentialAttributes,
			AuthPolicy:       tpm2.TPM2BDigest{Buffer: authPolicy[:]},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Scheme: tpm2.TPMTECCScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: kt.hashAlg()}),
				},
				CurveID: kt.curve,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
				X: tpm2.TPM2BECCParameter{Buffer: unique[:kt.coord]},
				Y: tpm2.TPM2BECCParameter{Buffer: unique[kt.coord:]},
			}),
		}
	}
	if unique == nil {
		unique = make([]byte, rsaBits/8)
	}
	var details tpm2.TPMUAsymScheme
	if kt.scheme == tpm2.TPMAlgRSAPSS {
		details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: kt.hashAlg()})
	} else {
		details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: kt.hashAlg()})
	}
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: credentialAttributes,
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: authPolicy[:]},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme:  tpm2.TPMTRSAScheme{Scheme: kt.scheme, Details: details},
			KeyBits: rsaBits,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: unique}),
	}
}

// uniqueOf returns the public key bytes a version-2 ID stores, from the
// public area the TPM made.
func (kt *keyType) uniqueOf(pub *tpm2.TPMTPublic) ([]byte, error) {
	if kt.isRSA() {
		n, err := pub.Unique.RSA()
		if err != nil || len(n.Buffer) != rsaBits/8 {
			return nil, errors.New("tpm: bad RSA modulus")
		}
		return n.Buffer, nil
	}
	pt, err := pub.Unique.ECC()
	if err != nil || len(pt.X.Buffer) != kt.coord || len(pt.Y.Buffer) != kt.coord {
		return nil, errors.New("tpm: bad ECC point")
	}
	return append(append([]byte(nil), pt.X.Buffer...), pt.Y.Buffer...), nil
}

// publicKey parses the public key bytes of a version-2 ID.
func (kt *keyType) publicKey(unique []byte) (crypto.PublicKey, error) {
	if len(unique) != kt.uniqueSize() {
		return nil, errors.New("tpm: public key of the wrong size")
	}
	if kt.isRSA() {
		n := new(big.Int).SetBytes(unique)
		if n.BitLen() != rsaBits || n.Bit(0) == 0 {
			return nil, errors.New("tpm: not an RSA-2048 modulus")
		}
		return &rsa.PublicKey{N: n, E: 65537}, nil
	}
	var curve elliptic.Curve
	switch kt.curve {
	case tpm2.TPMECCNistP256:
		return p256Point(unique[:32], unique[32:])
	case tpm2.TPMECCNistP384:
		curve = elliptic.P384()
	case tpm2.TPMECCNistP521:
		curve = elliptic.P521()
	}
	x, y := new(big.Int).SetBytes(unique[:kt.coord]), new(big.Int).SetBytes(unique[kt.coord:])
	if !curve.IsOnCurve(x, y) {
		return nil, errors.New("tpm: point not on the curve")
	}
	return &ecdsa.PublicKey{Curve: curve, X: x, Y: y}, nil
}

// sigScheme is the Sign scheme of the key type.
func (kt *keyType) sigScheme() tpm2.TPMTSigScheme {
	h := &tpm2.TPMSSchemeHash{HashAlg: kt.hashAlg()}
	return tpm2.TPMTSigScheme{Scheme: kt.scheme, Details: tpm2.NewTPMUSigScheme(kt.scheme, h)}
}

// encodeSignature turns a TPMT_SIGNATURE into what crypto.Signer returns:
// ASN.1 DER for ECDSA, the raw signature for RSA.
func (kt *keyType) encodeSignature(sig tpm2.TPMTSignature) ([]byte, error) {
	switch kt.scheme {
	case tpm2.TPMAlgECDSA:
		s, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("tpm: Sign returned a non-ECDSA signature: %w", err)
		}
		return asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(s.SignatureR.Buffer),
			new(big.Int).SetBytes(s.SignatureS.Buffer),
		})
	case tpm2.TPMAlgRSAPSS:
		s, err := sig.Signature.RSAPSS()
		if err != nil {
			return nil, fmt.Errorf("tpm: Sign returned a non-PSS signature: %w", err)
		}
		return s.Sig.Buffer, nil
	default:
		s, err := sig.Signature.RSASSA()
		if err != nil {
			return nil, fmt.Errorf("tpm: Sign returned a non-PKCS#1 signature: %w", err)
		}
		return s.Sig.Buffer, nil
	}
}

// probeAlgorithms asks the TPM once, at start, which credential
// algorithms it implements: the signing schemes and hashes (TPM_CAP_ALGS)
// and the curves (TPM_CAP_ECC_CURVES). Called with e.mu held.
func (e *Engine) probeAlgorithms() error {
	algs := map[tpm2.TPMAlgID]bool{}
	var curves []tpm2.TPMECCCurve
	err := e.capability(tpm2.TPMCapAlgs, 256, func(d *tpm2.TPMUCapabilities) error {
		a, err := d.Algorithms()
		if err == nil {
			for _, p := range a.AlgProperties {
				algs[p.Alg] = true
			}
		}
		return err
	})
	if err == nil {
		err = e.capability(tpm2.TPMCapECCCurves, 64, func(d *tpm2.TPMUCapabilities) error {
			c, err := d.ECCCurves()
			if err == nil {
				curves = c.ECCCurves
			}
			return err
		})
	}
	if err != nil {
		return err
	}
	var have []Algorithm
	for _, kt := range keyTypes {
		ok := algs[kt.scheme] && algs[kt.hashAlg()]
		if kt.isRSA() {
			ok = ok && algs[tpm2.TPMAlgRSA]
		} else {
			ok = ok && algs[tpm2.TPMAlgECC] && slices.Contains(curves, kt.curve)
		}
		if ok {
			have = append(have, kt.alg)
		}
	}
	if !slices.Contains(have, ES256) {
		return errors.New("tpm: the TPM has no ECDSA on P-256, which U2F needs")
	}
	e.algorithms = have
	e.log.Info("tpm: credential algorithms", "cose", have)
	return nil
}

// Algorithms returns the credential algorithms this TPM implements, in
// tpm-u2f's order of preference. It asks the TPM nothing: New did.
func (e *Engine) Algorithms() []Algorithm { return slices.Clone(e.algorithms) }

// Supports reports whether this TPM can make credentials with alg.
func (e *Engine) Supports(alg Algorithm) bool { return slices.Contains(e.algorithms, alg) }

// capability runs one TPM2_GetCapability from property 0 and hands its
// data to read.
func (e *Engine) capability(c tpm2.TPMCap, count uint32, read func(*tpm2.TPMUCapabilities) error) error {
	return e.do("GetCapability", func() error {
		rsp, err := tpm2.GetCapability{Capability: c, PropertyCount: count}.Execute(e.t)
		if err != nil {
			return err
		}
		return read(&rsp.CapabilityData.Data)
	})
}
