package tpm_test

import (
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// BenchmarkRawLoadSignFlush is the floor: what any TPM-backed signature
// with a wrapped key costs, with the parent already loaded.
func BenchmarkRawLoadSignFlush(b *testing.B) {
	for _, be := range tpmtest.Backends {
		b.Run(be.Name, func(b *testing.B) {
			meter := tpm.NewMeter(be.Open(b))
			raw := tpmtest.NewRaw(b, meter)
			tpmtest.Measure(b, meter, func() error { return raw.LoadSignFlush(raw.Parent) })
		})
	}
}

// BenchmarkTpmFidoPattern models what psanford/tpm-fido does per U2F
// authenticate: a storage primary created per signature, and the whole
// sequence run twice (a dummy signature, then the real one).
func BenchmarkTpmFidoPattern(b *testing.B) {
	for _, be := range tpmtest.Backends {
		b.Run(be.Name, func(b *testing.B) {
			meter := tpm.NewMeter(be.Open(b))
			raw := tpmtest.NewRaw(b, meter)
			once := func() error {
				p := tpmtest.CreatePrimary(b, meter)
				defer tpm2.FlushContext{FlushHandle: p.Handle}.Execute(meter)
				return raw.LoadSignFlush(p)
			}
			tpmtest.Measure(b, meter, func() error {
				if err := once(); err != nil {
					return err
				}
				return once()
			})
		})
	}
}

// BenchmarkEngineAuthenticate is the TPM part of a warm U2F authenticate:
// a counter value and a signature with a credential key.
func BenchmarkEngineAuthenticate(b *testing.B) {
	for _, be := range tpmtest.Backends {
		b.Run(be.Name, func(b *testing.B) {
			meter := tpm.NewMeter(be.Open(b))
			e := tpmtest.Engine(b, meter, tpm.Options{})
			party := rp("example.org")
			id, err := e.NewCredential(party, func(*tpm.Key) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			d := sha256.Sum256([]byte("challenge"))
			tpmtest.Measure(b, meter, func() error {
				if _, err := e.NextCounter(); err != nil {
					return err
				}
				return e.UseCredential(id, party, func(k *tpm.Key) error {
					_, err := k.Sign(rand.Reader, d[:], nil)
					return err
				})
			})
		})
	}
}

// BenchmarkEngineRegister is the TPM part of a warm U2F register: a new
// key, its self-signed certificate and the registration signature.
func BenchmarkEngineRegister(b *testing.B) {
	for _, be := range tpmtest.Backends {
		b.Run(be.Name, func(b *testing.B) {
			meter := tpm.NewMeter(be.Open(b))
			e := tpmtest.Engine(b, meter, tpm.Options{})
			d := sha256.Sum256([]byte("challenge"))
			tpmtest.Measure(b, meter, func() error {
				_, err := e.NewCredential(rp("example.org"), func(k *tpm.Key) error {
					for range 2 {
						if _, err := k.Sign(rand.Reader, d[:], nil); err != nil {
							return err
						}
					}
					return nil
				})
				return err
			})
		})
	}
}
