package tpm_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func TestCredRandom(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e, id, err := tpm.New(sim, tpm.NewIdentity(), tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(id.HMACKey) == 0 {
		t.Fatal("no hmac-secret key provisioned")
	}
	a1, err := e.CredRandom([]byte("credential A"), false)
	if err != nil || len(a1) != 32 {
		t.Fatalf("CredRandom: %x, %v", a1, err)
	}
	a1again, _ := e.CredRandom([]byte("credential A"), false)
	a1uv, _ := e.CredRandom([]byte("credential A"), true)
	b1, _ := e.CredRandom([]byte("credential B"), false)
	if !bytes.Equal(a1, a1again) || bytes.Equal(a1, a1uv) || bytes.Equal(a1, b1) {
		t.Fatal("CredRandom must be stable per credential and differ with uv and between credentials")
	}
	// The identity saved and loaded again (another process) gives the same.
	path := filepath.Join(t.TempDir(), "identity.json")
	if err := tpm.SaveIdentity(path, id); err != nil {
		t.Fatal(err)
	}
	e.Close()
	loaded, err := tpm.LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	e2, _, err := tpm.New(sim, loaded, tpm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if again, err := e2.CredRandom([]byte("credential A"), false); err != nil || !bytes.Equal(again, a1) {
		t.Fatalf("after a restart: %x, %v", again, err)
	}
	// A reset changes every CredRandom.
	if _, err := e2.Reset(); err != nil {
		t.Fatal(err)
	}
	if after, err := e2.CredRandom([]byte("credential A"), false); err != nil || bytes.Equal(after, a1) {
		t.Fatalf("after a reset: %x, %v", after, err)
	}
}

// largeBlobKey is derived, not stored: stable per credential, different
// from every CredRandom, and replaced by a reset.
func TestLargeBlobKey(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	k1, err := e.LargeBlobKey([]byte("credential A"))
	if err != nil || len(k1) != 32 {
		t.Fatalf("LargeBlobKey: %x, %v", k1, err)
	}
	again, _ := e.LargeBlobKey([]byte("credential A"))
	other, _ := e.LargeBlobKey([]byte("credential B"))
	cr0, _ := e.CredRandom([]byte("credential A"), false)
	cr1, _ := e.CredRandom([]byte("credential A"), true)
	if !bytes.Equal(k1, again) || bytes.Equal(k1, other) || bytes.Equal(k1, cr0) || bytes.Equal(k1, cr1) {
		t.Fatal("largeBlobKey must be stable per credential and differ from other credentials' and from CredRandom")
	}
	if _, err := e.Reset(); err != nil {
		t.Fatal(err)
	}
	if after, err := e.LargeBlobKey([]byte("credential A")); err != nil || bytes.Equal(after, k1) {
		t.Fatalf("after a reset: %x, %v", after, err)
	}
}
