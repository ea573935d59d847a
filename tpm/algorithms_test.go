package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// Every algorithm the TPM offers makes credentials whose signatures
// verify with Go's own crypto, and whose IDs carry the algorithm.
func TestEveryAlgorithmSignsAndVerifies(t *testing.T) {
	for _, backend := range []string{"sim", "swtpm"} {
		t.Run(backend, func(t *testing.T) {
			var tr interface{ Send([]byte) ([]byte, error) }
			if backend == "sim" {
				tr = tpmtest.Simulator(t)
			} else {
				sw, _, err := tpm.Open(tpmtest.SWTPM(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { sw.Close() })
				tr = sw
			}
			meter := tpm.NewMeter(tr)
			e := tpmtest.Engine(t, meter, tpm.Options{})
			algs := e.Algorithms()
			t.Logf("%s offers %v", backend, algs)
			for _, want := range []tpm.Algorithm{tpm.ES256, tpm.ES384, tpm.ES512, tpm.RS256, tpm.PS256} {
				if !slices.Contains(algs, want) {
					t.Errorf("%s lacks %d, which it implements", backend, want)
				}
			}
			for _, alg := range algs {
				hash := map[tpm.Algorithm]crypto.Hash{tpm.ES384: crypto.SHA384, tpm.ES512: crypto.SHA512}[alg]
				if hash == 0 {
					hash = crypto.SHA256
				}
				var pub crypto.PublicKey
				id, err := e.CreateCredential(rp("example.org"), alg, tpm.Policy{CredProtect: 2}, func(k *tpm.Key) error {
					pub = k.Public()
					if k.Algorithm() != alg {
						t.Errorf("key algorithm %d, want %d", k.Algorithm(), alg)
					}
					return nil
				})
				if err != nil {
					t.Fatalf("%d: %v", alg, err)
				}
				if len(id) > tpm.MaxCredentialIDLength {
					t.Errorf("%d: ID of %d bytes, over %d", alg, len(id), tpm.MaxCredentialIDLength)
				}
				got, gotAlg, err := tpm.CredentialPublicKey(id, rp("example.org"))
				if err != nil || gotAlg != alg || !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
					t.Errorf("%d: CredentialPublicKey = %d, %v", alg, gotAlg, err)
				}
				h := hash.New()
				h.Write([]byte("signed data"))
				digest := h.Sum(nil)
				before := meter.Snapshot()
				var sig []byte
				err = e.UseCredential(id, rp("example.org"), func(k *tpm.Key) (err error) {
					sig, err = k.Sign(rand.Reader, digest, hash)
					return err
				})
				if err != nil {
					t.Fatalf("%d: sign: %v", alg, err)
				}
				t.Logf("%s %d: ID %d bytes, sign %s", backend, alg, len(id), meter.Snapshot().Sub(before))
				switch alg {
				case tpm.RS256:
					err = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), hash, digest, sig)
				case tpm.PS256:
					// RFC 8230: PS256's salt is as long as the hash.
					err = rsa.VerifyPSS(pub.(*rsa.PublicKey), hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
				default:
					if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest, sig) {
						t.Errorf("%d: signature does not verify", alg)
					}
				}
				if err != nil {
					t.Errorf("%d: signature does not verify: %v", alg, err)
				}
				// A digest of another hash is refused before the TPM.
				if alg != tpm.ES256 {
					e.UseCredential(id, rp("example.org"), func(k *tpm.Key) error {
						if _, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err == nil && hash != crypto.SHA256 {
							t.Errorf("%d: signed a SHA-256 digest", alg)
						}
						return nil
					})
				}
			}
			if _, err := e.CreateCredential(rp("example.org"), tpm.Algorithm(-8), tpm.Policy{}, func(*tpm.Key) error { return nil }); err != tpm.ErrUnsupportedAlgorithm {
				t.Errorf("EdDSA on a TPM without it: %v", err)
			}
		})
	}
}

// The algorithms are asked once, when the engine starts: never per
// request.
func TestAlgorithmsAskedOnceAtStart(t *testing.T) {
	meter := tpm.NewMeter(tpmtest.Simulator(t))
	e := tpmtest.Engine(t, meter, tpm.Options{})
	if n := meter.Snapshot()[tpm2.TPMCCGetCapability].Count; n != 2 {
		t.Errorf("start asked GetCapability %d times, want 2 (algorithms, curves)", n)
	}
	before := meter.Snapshot()
	for range 3 {
		e.Algorithms()
		newCredential(t, e, rp("example.org"))
	}
	if n := meter.Snapshot().Sub(before)[tpm2.TPMCCGetCapability].Count; n != 0 {
		t.Errorf("requests asked GetCapability %d times", n)
	}
}
