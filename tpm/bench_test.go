package tpm_test

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// backends opens each TPM the benchmarks compare on.
var backends = []struct {
	name string
	open func(testing.TB) transport.TPM
}{
	{"sim", func(tb testing.TB) transport.TPM { return tpmtest.Simulator(tb) }},
	{"swtpm", func(tb testing.TB) transport.TPM {
		t, _, err := tpm.Open(tpmtest.SWTPM(tb))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { t.Close() })
		return t
	}},
}

// measure runs op b.N times and reports the median latency and the TPM
// commands per operation, by command code.
func measure(b *testing.B, meter *tpm.Meter, op func() error) {
	b.Helper()
	if err := op(); err != nil { // warm
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	before := meter.Snapshot()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	used := meter.Snapshot().Sub(before)
	slices.Sort(lat)
	median := lat[len(lat)/2]
	n := float64(len(lat))
	b.ReportMetric(float64(median.Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(used.Total())/n, "tpm-cmds/op")
	b.ReportMetric(0, "ns/op")
	if len(lat) > 1 {
		fmt.Fprintf(os.Stdout, "    %-44s median %7.2f ms  %4.1f TPM commands/op: %s\n",
			b.Name(), float64(median.Microseconds())/1000, float64(used.Total())/n, perOp(used, len(lat)))
	}
}

func perOp(s tpm.Stats, n int) string {
	out := make(tpm.Stats, len(s))
	for cc, v := range s {
		v.Count = (v.Count + n/2) / n
		if v.Count > 0 {
			out[cc] = v
		}
	}
	return out.String()
}

func srk(b *testing.B, t transport.TPM) tpm2.NamedHandle {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		b.Fatal(err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
}

var signingTemplate = tpm2.TPMTPublic{
	Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, NoDA: true, SignEncrypt: true},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
		CurveID: tpm2.TPMECCNistP256,
	}),
}

func rawSign(t transport.TPM, h tpm2.TPMHandle, name tpm2.TPM2BName) error {
	d := sha256.Sum256([]byte("challenge"))
	_, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: h, Name: name, Auth: tpm2.PasswordAuth(nil)},
		Digest:     tpm2.TPM2BDigest{Buffer: d[:]},
		InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(t)
	return err
}

func loadSignFlush(t transport.TPM, parent tpm2.NamedHandle, pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate) error {
	l, err := tpm2.Load{ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)}, InPublic: pub, InPrivate: priv}.Execute(t)
	if err != nil {
		return err
	}
	defer tpm2.FlushContext{FlushHandle: l.ObjectHandle}.Execute(t)
	return rawSign(t, l.ObjectHandle, l.Name)
}

// BenchmarkRawLoadSignFlush is the floor: what any TPM-backed signature
// with a wrapped key costs, with the parent already loaded.
func BenchmarkRawLoadSignFlush(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			meter := tpm.NewMeter(be.open(b))
			parent := srk(b, meter)
			c, err := tpm2.Create{ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)}, InPublic: tpm2.New2B(signingTemplate)}.Execute(meter)
			if err != nil {
				b.Fatal(err)
			}
			measure(b, meter, func() error { return loadSignFlush(meter, parent, c.OutPublic, c.OutPrivate) })
		})
	}
}

// BenchmarkTpmFidoPattern models what psanford/tpm-fido does per U2F
// authenticate: a storage primary created per signature, and the whole
// sequence run twice (a dummy signature, then the real one).
func BenchmarkTpmFidoPattern(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			meter := tpm.NewMeter(be.open(b))
			parent := srk(b, meter)
			c, err := tpm2.Create{ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)}, InPublic: tpm2.New2B(signingTemplate)}.Execute(meter)
			if err != nil {
				b.Fatal(err)
			}
			tpm2.FlushContext{FlushHandle: parent.Handle}.Execute(meter)
			once := func() error {
				p := srk(b, meter)
				defer tpm2.FlushContext{FlushHandle: p.Handle}.Execute(meter)
				return loadSignFlush(meter, p, c.OutPublic, c.OutPrivate)
			}
			measure(b, meter, func() error {
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
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			meter := tpm.NewMeter(be.open(b))
			e := tpmtest.Engine(b, meter, tpm.Options{})
			party := rp("example.org")
			id, err := e.NewCredential(party, func(*tpm.Key) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			d := sha256.Sum256([]byte("challenge"))
			measure(b, meter, func() error {
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
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			meter := tpm.NewMeter(be.open(b))
			e := tpmtest.Engine(b, meter, tpm.Options{})
			d := sha256.Sum256([]byte("challenge"))
			measure(b, meter, func() error {
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
