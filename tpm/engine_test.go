package tpm_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func rp(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func newCredential(t *testing.T, e *tpm.Engine, party [32]byte) ([]byte, *ecdsa.PublicKey) {
	t.Helper()
	var pub *ecdsa.PublicKey
	id, err := e.NewCredential(party, func(k *tpm.Key) error {
		pub = k.ECDSAPublic()
		return nil
	})
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	return id, pub
}

func sign(e *tpm.Engine, id []byte, party [32]byte, msg string) ([]byte, error) {
	d := sha256.Sum256([]byte(msg))
	var sig []byte
	err := e.UseCredential(id, party, func(k *tpm.Key) (err error) {
		sig, err = k.Sign(rand.Reader, d[:], nil)
		return err
	})
	return sig, err
}

func TestCredentialSignsAndVerifies(t *testing.T) {
	meter := tpm.NewMeter(tpmtest.Simulator(t))
	e := tpmtest.Engine(t, meter, tpm.Options{})
	id, pub := newCredential(t, e, rp("example.org"))
	if len(id) > 255 {
		t.Fatalf("credential ID is %d bytes, want <= 255 for U2F", len(id))
	}
	t.Logf("credential ID: %d bytes", len(id))
	got, alg, err := tpm.CredentialPublicKey(id, rp("example.org"))
	if err != nil || !pub.Equal(got) || alg != tpm.ES256 {
		t.Fatalf("CredentialPublicKey = %v, %v", got, err)
	}
	// Warm: the pool is full and the primary exists.
	sign(e, id, rp("example.org"), "warm-up")
	before := meter.Snapshot()
	sig, err := sign(e, id, rp("example.org"), "hello")
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("hello"))
	if !ecdsa.VerifyASN1(pub, d[:], sig) {
		t.Fatal("signature does not verify")
	}
	used := meter.Snapshot().Sub(before)
	t.Logf("warm sign: %s", used)
	for _, cc := range []tpm2.TPMCC{tpm2.TPMCCCreatePrimary, tpm2.TPMCCStartAuthSession, tpm2.TPMCCGetCapability} {
		if used[cc].Count != 0 {
			t.Errorf("warm sign sent %s", tpm.CommandName(cc))
		}
	}
	if used.Total() > 3 {
		t.Errorf("warm sign sent %d commands (%s), want at most Load+Sign+Flush", used.Total(), used)
	}
}

func TestForeignCredentialsRejectedWithoutTPM(t *testing.T) {
	meter := tpm.NewMeter(tpmtest.Simulator(t))
	e := tpmtest.Engine(t, meter, tpm.Options{})
	id, _ := newCredential(t, e, rp("example.org"))

	cases := map[string][]byte{
		"empty":     {},
		"version":   append([]byte{3}, id[1:]...), // an unknown version
		"v1 header": append([]byte{1}, id[1:]...),
		"truncated": id[:len(id)-1],
		"trailing":  append(append([]byte{}, id...), 0),
		"long":      make([]byte, 300),
	}
	flipped := append([]byte{}, id...)
	flipped[40] ^= 1 // inside the public point
	cases["public bit flip"] = flipped
	policy := append([]byte{}, id...)
	policy[1] = 3 // credProtect 3: the tag no longer matches
	cases["policy raised"] = policy
	before := meter.Snapshot()
	for name, bad := range cases {
		if _, err := sign(e, bad, rp("example.org"), "x"); !errors.Is(err, tpm.ErrForeignCredential) {
			t.Errorf("%s: err = %v, want ErrForeignCredential", name, err)
		}
	}
	if _, err := sign(e, id, rp("evil.example"), "x"); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("other RP: err = %v, want ErrForeignCredential", err)
	}
	if n := meter.Snapshot().Sub(before).Total(); n != 0 {
		t.Errorf("rejecting malformed and misbound credentials sent %d TPM commands, want 0", n)
	}
}

func TestTamperedPrivateAndOtherInstallationRejected(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e := tpmtest.Engine(t, sim, tpm.Options{})
	other := tpmtest.Engine(t, sim, tpm.Options{})
	id, _ := newCredential(t, e, rp("example.org"))

	if _, err := sign(other, id, rp("example.org"), "x"); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("credential of another installation: err = %v, want ErrForeignCredential", err)
	}
	tampered := append([]byte{}, id...)
	tampered[len(tampered)-3] ^= 0x80
	if _, err := sign(e, tampered, rp("example.org"), "x"); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("tampered private blob: err = %v, want ErrForeignCredential", err)
	}
	if _, err := sign(e, id, rp("example.org"), "still fine"); err != nil {
		t.Errorf("good credential after rejections: %v", err)
	}
	tpmtest.AssertNoLockout(t, sim)
}

func TestCounterNeverRepeatsAcrossRestarts(t *testing.T) {
	sim := tpmtest.Simulator(t)
	id := tpm.NewIdentity()
	var last uint32
	for run := range 3 {
		e, nid, err := tpm.New(sim, id, tpm.Options{CounterBlock: 8})
		if err != nil {
			t.Fatal(err)
		}
		id = nid
		for range 11 { // crosses a block boundary
			v, err := e.NextCounter()
			if err != nil {
				t.Fatal(err)
			}
			if v <= last && !(run == 0 && last == 0) {
				t.Fatalf("run %d: counter %d after %d", run, v, last)
			}
			last = v
		}
		e.Close() // a crash would lose the rest of the block; the next run skips it
	}
}

func TestCredentialsSurviveEngineRestart(t *testing.T) {
	sim := tpmtest.Simulator(t)
	id := tpm.NewIdentity()
	e, id, err := tpm.New(sim, id, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cred, pub := newCredential(t, e, rp("example.org"))
	e.Close()
	e2, _, err := tpm.New(sim, id, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	sig, err := sign(e2, cred, rp("example.org"), "m")
	d := sha256.Sum256([]byte("m"))
	if err != nil || !ecdsa.VerifyASN1(pub, d[:], sig) {
		t.Fatalf("sign after restart: %v", err)
	}
}

func TestSWTPMBackend(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	tp, b, err := tpm.Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if !b.Bare {
		t.Error("swtpm should be reported as a bare TPM")
	}
	e := tpmtest.Engine(t, tp, tpm.Options{})
	id, pub := newCredential(t, e, rp("example.org"))
	sig, err := sign(e, id, rp("example.org"), "m")
	d := sha256.Sum256([]byte("m"))
	if err != nil || !ecdsa.VerifyASN1(pub, d[:], sig) {
		t.Fatalf("sign on swtpm: %v", err)
	}
	if _, err := e.NextCounter(); err != nil {
		t.Fatal(err)
	}
}

func TestSealUnseal(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e := tpmtest.Engine(t, sim, tpm.Options{})
	secret, blob, err := e.Seal()
	if err != nil || len(secret) != 32 {
		t.Fatalf("Seal: %v", err)
	}
	got, err := e.Unseal(blob)
	if err != nil || string(got) != string(secret) {
		t.Fatalf("Unseal: %v", err)
	}
	other := tpmtest.Engine(t, sim, tpm.Options{})
	if _, err := other.Unseal(blob); !errors.Is(err, tpm.ErrSealedForeign) {
		t.Fatalf("another installation unsealed it: %v", err)
	}
	bad := append([]byte(nil), blob...)
	bad[len(bad)-2] ^= 1
	if _, err := e.Unseal(bad); !errors.Is(err, tpm.ErrSealedForeign) {
		t.Fatalf("tampered blob: %v", err)
	}
	for _, junk := range [][]byte{nil, {0}, {0, 200, 1}, blob[:10]} {
		if _, err := e.Unseal(junk); !errors.Is(err, tpm.ErrSealedForeign) {
			t.Fatalf("junk %x: %v", junk, err)
		}
	}
	tpmtest.AssertNoLockout(t, sim)
}

func TestResetKillsOldCredentials(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e := tpmtest.Engine(t, sim, tpm.Options{})
	id, _ := newCredential(t, e, rp("example.org"))
	before, _ := e.NextCounter()
	newID, err := e.Reset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign(e, id, rp("example.org"), "m"); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Fatalf("credential from before the reset: %v", err)
	}
	fresh, _ := newCredential(t, e, rp("example.org"))
	if _, err := sign(e, fresh, rp("example.org"), "m"); err != nil {
		t.Fatalf("new credential after reset: %v", err)
	}
	if after, _ := e.NextCounter(); after <= before || newID.CounterIndex != e.Identity().CounterIndex {
		t.Fatalf("counter %d after %d across a reset", after, before)
	}
	tpmtest.AssertNoLockout(t, sim)
}
