package tpm_test

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func TestCredentialIDCarriesItsPolicy(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	for _, p := range []tpm.Policy{{}, {CredProtect: 1}, {CredProtect: 2, Discoverable: true}, {CredProtect: 3}, {CredProtect: 3, Discoverable: true},
		{ThirdPartyPayment: true}, {CredProtect: 2, Discoverable: true, ThirdPartyPayment: true}} {
		id, err := e.CreateCredential(rp("example.org"), tpm.ES256, p, func(*tpm.Key) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(id) > 255 {
			t.Fatalf("credential ID is %d bytes, want <= 255 for U2F", len(id))
		}
		info, err := e.Inspect(id, rp("example.org"))
		if err != nil || info.Policy != p || info.Legacy {
			t.Errorf("Inspect(%+v) = %+v, %v", p, info, err)
		}
		if _, err := sign(e, id, rp("example.org"), "x"); err != nil {
			t.Errorf("%+v: sign: %v", p, err)
		}
	}
	if _, err := e.CreateCredential(rp("example.org"), tpm.ES256, tpm.Policy{CredProtect: 4}, func(*tpm.Key) error { return nil }); err == nil {
		t.Error("credProtect 4 accepted")
	}
}

// Another installation's IDs, and this installation's from before a
// reset, are told apart exactly and without a TPM command.
func TestOtherInstallationsIDsAreNotOursWithoutTPM(t *testing.T) {
	sim := tpmtest.Simulator(t)
	meter := tpm.NewMeter(sim)
	e := tpmtest.Engine(t, meter, tpm.Options{})
	other := tpmtest.Engine(t, sim, tpm.Options{})
	theirs, _ := newCredential(t, other, rp("example.org"))
	ours, _ := newCredential(t, e, rp("example.org"))

	before := meter.Snapshot()
	if _, err := e.Inspect(theirs, rp("example.org")); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("Inspect(other installation's ID) = %v, want ErrForeignCredential", err)
	}
	if _, err := sign(e, theirs, rp("example.org"), "x"); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("sign with another installation's ID: %v", err)
	}
	if _, err := e.Inspect(ours, rp("example.org")); err != nil {
		t.Errorf("Inspect(our ID) = %v", err)
	}
	if n := meter.Snapshot().Sub(before).Total(); n != 0 {
		t.Errorf("telling IDs apart sent %d TPM commands, want 0", n)
	}

	if _, err := e.Reset(); err != nil {
		t.Fatal(err)
	}
	before = meter.Snapshot()
	if _, err := e.Inspect(ours, rp("example.org")); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("Inspect(ID from before the reset) = %v, want ErrForeignCredential", err)
	}
	if n := meter.Snapshot().Sub(before).Total(); n != 0 {
		t.Errorf("refusing an ID from before the reset sent %d TPM commands, want 0", n)
	}
}

// The policy byte is bound inside the TPM too: an ID whose policy was
// lowered and whose tag was recomputed (as someone holding the tag key
// could) still does not load.
func TestLoweredPolicyRefusedByTheTPM(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	id, err := e.CreateCredential(rp("example.org"), tpm.ES256, tpm.Policy{CredProtect: 3}, func(*tpm.Key) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	lowered := tpm.RetagForTest(e, id, rp("example.org"), 0)
	if _, err := e.Inspect(lowered, rp("example.org")); err != nil {
		t.Fatalf("retagged ID not accepted by Inspect: %v", err)
	}
	if _, err := sign(e, lowered, rp("example.org"), "x"); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("sign with a lowered policy: %v, want ErrForeignCredential", err)
	}
}

// IDs made before policy was bound into them (version 1) keep working,
// with the semantics they had.
func TestLegacyCredentialIDsKeepWorking(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e := tpmtest.Engine(t, sim, tpm.Options{})
	other := tpmtest.Engine(t, sim, tpm.Options{})
	id, err := e.TestOnlyLegacyCredential(rp("example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if id[0] != 1 || len(id) != 251 {
		t.Fatalf("legacy ID: version %d, %d bytes", id[0], len(id))
	}
	info, err := e.Inspect(id, rp("example.org"))
	if err != nil || !info.Legacy || info.Policy != (tpm.Policy{}) {
		t.Errorf("Inspect(legacy) = %+v, %v", info, err)
	}
	if _, err := sign(e, id, rp("example.org"), "x"); err != nil {
		t.Errorf("legacy ID does not sign: %v", err)
	}
	if _, err := e.Inspect(id, rp("other.example")); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("legacy ID for another RP: %v", err)
	}
	if _, err := sign(other, id, rp("example.org"), "x"); !errors.Is(err, tpm.ErrForeignCredential) {
		t.Errorf("legacy ID at another installation: %v", err)
	}
}

// The version-1 layout is fixed forever: IDs made with it are in users'
// accounts, and their public areas must keep comparing equal.
func TestVersion1LayoutUnchanged(t *testing.T) {
	const want = "0023000b00040472002023d946aa85c15318c4b5b82c9f734ae0b1ac454c071e43880167336ee1e176e100100018000b000300100020000000000000000000000000000000000000000000000000000000000000000000200000000000000000000000000000000000000000000000000000000000000000"
	if got := hex.EncodeToString(tpm.PublicLayoutForTest); got != want {
		t.Fatalf("version-1 public layout changed:\n got %s\nwant %s", got, want)
	}
}
