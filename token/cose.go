package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// algHash is the hash a credential algorithm signs with.
func algHash(alg int64) crypto.Hash {
	switch alg {
	case ctap2.AlgES384:
		return crypto.SHA384
	case ctap2.AlgES512:
		return crypto.SHA512
	}
	return crypto.SHA256
}

// algorithmer is what package tpm's Key adds to crypto.Signer: the key's
// COSE algorithm, which its public key alone does not tell (RS256 and
// PS256 keys look alike).
type algorithmer interface{ COSEAlgorithm() int64 }

// algOf is the COSE algorithm of a credential key; a key that does not
// say is ES256, the only algorithm of keys that predate the choice.
func algOf(k crypto.Signer) int64 {
	if a, ok := k.(algorithmer); ok {
		return a.COSEAlgorithm()
	}
	return ctap2.AlgES256
}

// signWith signs data with k as its algorithm says: the data hashed with
// the algorithm's hash, PSS with a salt as long as the hash for PS256
// (RFC 8230 section 2).
func signWith(k crypto.Signer, data []byte) ([]byte, error) {
	alg := algOf(k)
	h := algHash(alg)
	w := h.New()
	w.Write(data)
	var opts crypto.SignerOpts = h
	if alg == ctap2.AlgPS256 {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	return k.Sign(rand.Reader, w.Sum(nil), opts)
}

// credentialPublicKey encodes a credential's public key as a COSE_Key
// (RFC 9053 sections 7.1 and RFC 8230 section 4), in CTAP2 canonical
// CBOR: EC2 for the ECDSA curves, RSA with n and e.
func credentialPublicKey(pub crypto.PublicKey, alg int64) (cbor.RawMessage, error) {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		var crv int64
		switch p.Curve {
		case elliptic.P256():
			crv = 1
		case elliptic.P384():
			crv = 2
		case elliptic.P521():
			crv = 3
		default:
			return nil, errors.New("token: unknown curve")
		}
		size := (p.Curve.Params().BitSize + 7) / 8
		return ctap2.Marshal(map[int64]any{1: 2, 3: alg, -1: crv, -2: p.X.FillBytes(make([]byte, size)), -3: p.Y.FillBytes(make([]byte, size))})
	case *rsa.PublicKey:
		return ctap2.Marshal(map[int64]any{1: 3, 3: alg, -1: p.N.Bytes(), -2: big.NewInt(int64(p.E)).Bytes()})
	}
	return nil, errors.New("token: unknown credential key type")
}
