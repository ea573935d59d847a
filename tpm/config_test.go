package tpm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestSettingsSurviveRestoredState: the configuration is set after the
// state directory (identity.json) was backed up; a start on the backup
// still has it, since it lives in the TPM under a handle derived from the
// epoch index, not in a file. A reset returns it to the defaults at its
// commit point, and a start after the reset reads the defaults too.
func TestSettingsSurviveRestoredState(t *testing.T) {
	sim := openSim(t)
	defer sim.Close()
	d := &disk{}
	e, id, err := New(sim, NewIdentity(), Options{Persist: d.save})
	if err != nil {
		t.Fatal(err)
	}
	d.id = id
	backup := id
	if s, err := e.Settings(); err != nil || !equalSettings(s, Settings{}) {
		t.Fatalf("new installation: %+v, %v; want the defaults", s, err)
	}
	want := Settings{AlwaysUV: true, ForcePINChange: true, MinPINLength: 8, PINLength: 6,
		MinPINLengthRPIDs: [][32]byte{sha256.Sum256([]byte("example.org"))}}
	if err := e.SetSettings(want); err != nil {
		t.Fatal(err)
	}
	if s, err := e.Settings(); err != nil || !equalSettings(s, want) {
		t.Fatalf("after SetSettings: %+v, %v", s, err)
	}
	e.Close()

	// The backup from before the change does not bring the old settings back.
	e, _, err = New(sim, backup, Options{Persist: d.save})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := e.Settings(); err != nil || !equalSettings(s, want) {
		t.Fatalf("started on an older identity.json: %+v, %v; want %+v", s, err, want)
	}

	// A reset returns them to the defaults, with no TPM command of its own.
	if _, err := e.Reset(); err != nil {
		t.Fatal(err)
	}
	if s, err := e.Settings(); err != nil || !equalSettings(s, Settings{}) {
		t.Fatalf("after reset: %+v, %v; want the defaults", s, err)
	}
	e.Close()
	e, _, err = New(sim, d.id, Options{Persist: d.save})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if s, err := e.Settings(); err != nil || !equalSettings(s, Settings{}) {
		t.Fatalf("start after reset: %+v, %v; want the defaults", s, err)
	}
	// And they can be set again under the new epoch.
	next := Settings{MinPINLength: 6}
	if err := e.SetSettings(next); err != nil {
		t.Fatal(err)
	}
	e.settingsCache = nil
	if s, err := e.Settings(); err != nil || !equalSettings(s, next) {
		t.Fatalf("read back after reset: %+v, %v", s, err)
	}
}

// TestSettingsIndexReplacedFailsClosed: an index at the settings handle
// that is not the one tpm-u2f defines (here: a bigger one, someone's own)
// is not read as the defaults; the engine refuses to start.
func TestSettingsIndexReplacedFailsClosed(t *testing.T) {
	sim := openSim(t)
	defer sim.Close()
	e, id, err := New(sim, NewIdentity(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	pub, _ := settingsPublic(settingsIndex(id.EpochName))
	pub.DataSize++
	if _, err := (tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(pub),
	}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	if _, _, err := New(sim, id, Options{}); !errors.Is(err, ErrNVIndexForeign) {
		t.Fatalf("start with a foreign settings index: %v, want ErrNVIndexForeign", err)
	}
}

func TestSettingsDecodeRefusesDamage(t *testing.T) {
	good, err := encodeSettings(7, Settings{AlwaysUV: true, MinPINLength: 9})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := decodeSettings(good, 7); err != nil || !s.AlwaysUV || s.MinPINLength != 9 {
		t.Fatalf("round trip: %+v, %v", s, err)
	}
	if s, err := decodeSettings(good, 8); err != nil || !equalSettings(s, Settings{}) {
		t.Fatalf("another epoch's data: %+v, %v; want the defaults", s, err)
	}
	for i, mutate := range []func(b []byte){
		func(b []byte) { b[0] = 2 },
		func(b []byte) { b[9] |= 0x80 },
		func(b []byte) { b[12] = MaxMinPINLengthRPIDs + 1 },
	} {
		b := append([]byte(nil), good...)
		mutate(b)
		if _, err := decodeSettings(b, 7); !errors.Is(err, ErrSettings) {
			t.Errorf("damage %d: %v, want ErrSettings", i, err)
		}
	}
	if _, err := decodeSettings(good[:20], 7); !errors.Is(err, ErrSettings) {
		t.Errorf("short: %v", err)
	}
}

func equalSettings(a, b Settings) bool {
	x, _ := encodeSettings(0, a)
	y, _ := encodeSettings(0, b)
	return bytes.Equal(x, y)
}
