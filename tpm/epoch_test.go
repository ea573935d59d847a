package tpm

// Tests of the reset epoch that play an attacker with the state directory
// and the TPM: they need the engine's insides (the templates), so they are
// in package tpm and open the simulator themselves (tpmtest imports tpm).

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

func openSim(t *testing.T) transport.TPMCloser {
	t.Helper()
	tr, _, err := Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

type disk struct{ id Identity }

func (d *disk) save(id Identity) error { d.id = id; return nil }

func signWith(e *Engine, cred []byte, rp string) error {
	d := sha256.Sum256([]byte("m"))
	return e.UseCredential(cred, sha256.Sum256([]byte(rp)), func(k *Key) error {
		_, err := k.Sign(nil, d[:], nil)
		return err
	})
}

// TestResetSurvivesRestoredBackup: credentials, an hmac-secret output and
// a sealed secret are made; the state (identity.json) is backed up; the
// key is reset; the backup is restored. The daemon refuses the restored
// identity (the epoch moved past it), and an attacker who builds the old
// primary himself from the restored file gets nothing from the TPM: the
// old storage key does not load, whatever authorization he offers.
func TestResetSurvivesRestoredBackup(t *testing.T) {
	sim := openSim(t)
	defer sim.Close()
	d := &disk{}
	e, id, err := New(sim, NewIdentity(), Options{Persist: d.save})
	if err != nil {
		t.Fatal(err)
	}
	d.id = id
	cred, err := e.NewCredential(sha256.Sum256([]byte("example.org")), func(*Key) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	cr, err := e.CredRandom(cred, true)
	if err != nil {
		t.Fatal(err)
	}
	_, sealed, err := e.Seal()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := e.NextCounter()
	backup := d.id

	newID, err := e.Reset()
	if err != nil {
		t.Fatal(err)
	}
	if newID.Pending != nil || d.id.Pending != nil || newID.Epoch <= backup.Epoch || newID.EpochIndex != backup.EpochIndex {
		t.Fatalf("after reset: %+v", newID)
	}
	if err := signWith(e, cred, "example.org"); !errors.Is(err, ErrForeignCredential) {
		t.Fatalf("old credential after reset: %v", err)
	}
	if got, err := e.CredRandom(cred, true); err != nil || bytes.Equal(got, cr) {
		t.Fatalf("old hmac-secret output came back after reset (%v)", err)
	}
	if _, err := e.Unseal(sealed); !errors.Is(err, ErrSealedForeign) {
		t.Fatalf("old sealed secret after reset: %v", err)
	}
	if after, err := e.NextCounter(); err != nil || after <= before {
		t.Fatalf("signature counter %d after %d across the reset (%v)", after, before, err)
	}
	e.Close()

	// Every file restored: the daemon refuses to start.
	if _, _, err := New(sim, backup, Options{}); !errors.Is(err, ErrStaleIdentity) {
		t.Fatalf("start on the restored identity: %v, want ErrStaleIdentity", err)
	}

	// The check bypassed: the attacker builds the old primary from the
	// restored identity (its Name is right: it is the same template) and
	// tries to load the old storage key under it, through the old epoch
	// policy and through the empty authValue.
	x := &Engine{t: sim, log: e.log, opt: e.opt, id: backup}
	p, pub, err := x.identityPrimary()
	if err != nil {
		t.Fatalf("old primary: %v", err)
	}
	if err := x.attach(p, pub); err == nil || !errors.Is(err, tpm2.TPMRCPolicy) {
		t.Fatalf("old storage key loaded through the old epoch policy: %v", err)
	}
	p, _, _ = x.identityPrimary()
	spub, spriv, _ := unpackWrapped(backup.StorageKey)
	_, err = tpm2.Load{ParentHandle: tpm2.AuthHandle{Handle: p.Handle, Name: p.Name, Auth: tpm2.PasswordAuth(nil)}, InPublic: *spub, InPrivate: *spriv}.Execute(sim)
	if !errors.Is(err, tpm2.TPMRCAuthUnavailable) {
		t.Fatalf("old storage key loaded with the empty authValue: %v", err)
	}
	x.flush(p.Handle)
	// Nor does the old seed under the epoch of today: another primary.
	x.id.Epoch = newID.Epoch
	p, pub, err = x.primaryTemplateCreate()
	if err != nil {
		t.Fatal(err)
	}
	if err := x.attach(p, pub); err == nil {
		t.Fatal("old storage key loaded under the old seed's primary at the current epoch")
	}
	// And the credential under the old primary directly (as before epochs).
	x.id.Bound = false
	p, _, err = x.primaryTemplateCreate()
	if err != nil {
		t.Fatal(err)
	}
	x.srk = p
	if err := signWith(x, cred, "example.org"); !errors.Is(err, ErrForeignCredential) {
		t.Fatalf("old credential under the unbound primary of the old seed: %v", err)
	}
	x.flush(p.Handle)
}

// primaryTemplateCreate creates x's primary without the Name check (an
// attacker's start).
func (e *Engine) primaryTemplateCreate() (tpm2.NamedHandle, tpm2.TPMTPublic, error) {
	tmpl, err := e.primaryTemplate(e.id.Seed, e.id.Bound, e.id.Epoch)
	if err != nil {
		return tpm2.NamedHandle{}, tpm2.TPMTPublic{}, err
	}
	return e.createPrimary(tmpl)
}

// TestTPMClearedStopsStart: after TPM2_Clear (lockout authorization, empty
// on the simulator as on most PCs) the owner hierarchy has a new seed, so
// the primary has another Name: the start fails with ErrPrimaryMismatch,
// whose message names the causes and the way out.
func TestTPMClearedStopsStart(t *testing.T) {
	sim := openSim(t)
	defer sim.Close()
	e, id, err := New(sim, NewIdentity(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if _, err := (tpm2.Clear{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)}}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	_, _, err = New(sim, id, Options{})
	if !errors.Is(err, ErrPrimaryMismatch) {
		t.Fatalf("start after TPM2_Clear: %v, want ErrPrimaryMismatch", err)
	}
	for _, says := range []string{"cleared", "another machine", "answers in its place", "move the state directory aside"} {
		if !bytes.Contains([]byte(err.Error()), []byte(says)) {
			t.Errorf("the error does not say %q: %v", says, err)
		}
	}
}

// TestPrimaryNameChecked: a recorded Name that is not the TPM's stops the
// start (what an interposer salting us to its own key looks like).
func TestPrimaryNameChecked(t *testing.T) {
	sim := openSim(t)
	defer sim.Close()
	e, id, err := New(sim, NewIdentity(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	id.PrimaryName = append([]byte(nil), id.PrimaryName...)
	id.PrimaryName[len(id.PrimaryName)-1] ^= 1
	if _, _, err := New(sim, id, Options{}); !errors.Is(err, ErrPrimaryMismatch) {
		t.Fatalf("start with another recorded Name: %v", err)
	}
}

// TestEpochIndexReplacedFailsClosed: someone with owner authorization
// undefines the epoch index (the start refuses: ErrEpochIndex) and defines
// one like it at the same handle. The new counter starts above the old
// value (the TPM guarantees it), so the start refuses the identity as
// reset, and the TPM refuses its storage key. Nor does an ordinary index
// holding the old value pass for it.
func TestEpochIndexReplacedFailsClosed(t *testing.T) {
	sim := openSim(t)
	defer sim.Close()
	e, id, err := New(sim, NewIdentity(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.undefineNV(id.EpochIndex); err != nil {
		t.Fatal(err)
	}
	if _, _, err := New(sim, id, Options{}); !errors.Is(err, ErrEpochIndex) {
		t.Fatalf("start without the epoch index: %v", err)
	}
	if err := e.defineCounter(id.EpochIndex); err != nil {
		t.Fatal(err)
	}
	v, err := e.incrementCounter(id.EpochIndex)
	if err != nil {
		t.Fatal(err)
	}
	if v <= id.Epoch {
		t.Fatalf("a redefined counter started at %d, not above the old value %d", v, id.Epoch)
	}
	e.Close()
	// Same type, attributes and size: the same Name. The value tells.
	if _, _, err := New(sim, id, Options{}); !errors.Is(err, ErrStaleIdentity) {
		t.Fatalf("start with a redefined epoch index: %v", err)
	}
	x := &Engine{t: sim, log: e.log, opt: e.opt, id: id}
	p, pub, err := x.identityPrimary()
	if err != nil {
		t.Fatal(err)
	}
	if err := x.attach(p, pub); !errors.Is(err, tpm2.TPMRCPolicy) {
		t.Fatalf("storage key loaded with a redefined epoch index: %v", err)
	}

	// An ordinary index in its place, holding the old value: PolicyNV's
	// comparison holds, but the TPM extends the policy with that index's
	// Name, which is not the counter's.
	if err := x.undefineNV(id.EpochIndex); err != nil {
		t.Fatal(err)
	}
	ordinary := tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(id.EpochIndex), NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthWrite: true, AuthRead: true, NoDA: true}, DataSize: 8}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(ordinary)}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	name, err := x.readNVPublic(id.EpochIndex)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVWrite{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(id.EpochIndex), Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(id.EpochIndex), Name: name},
		Data:    tpm2.TPM2BMaxNVBuffer{Buffer: binary.BigEndian.AppendUint64(nil, id.Epoch)}}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	if _, _, err := New(sim, id, Options{}); !errors.Is(err, ErrEpochIndex) {
		t.Fatalf("start with an ordinary index holding the old epoch: %v", err)
	}
	p, pub, err = x.identityPrimary()
	if err != nil {
		t.Fatal(err)
	}
	if err := x.attach(p, pub); !errors.Is(err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("storage key loaded with an ordinary index holding the old epoch: %v", err)
	}
}

// TestV1IdentityMigrates: identity.json and a credential made by tpm-u2f
// before reset epochs (version 1; testdata/v1identity, made on a simulator
// with fixed seeds) keep working after the upgrade: same credential, same
// hmac-secret output, same sealed secret, before and after a restart. The
// migration records the Name and defines the epoch; the first reset then
// binds the identity and kills the old credential, and a restored copy of
// the migrated identity is refused.
func TestV1IdentityMigrates(t *testing.T) {
	var made map[string]string
	b, err := os.ReadFile("testdata/v1identity/made.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &made); err != nil {
		t.Fatal(err)
	}
	h := func(k string) []byte { v, _ := hex.DecodeString(made[k]); return v }
	cred, cr, sealed, secret := h("credential_id"), h("cred_random_uv"), h("sealed"), h("secret")
	x, y := elliptic.Unmarshal(elliptic.P256(), h("public_key"))
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}

	s, err := simulator.GetWithFixedSeedInsecure(20261203)
	if err != nil {
		t.Fatal(err)
	}
	sim := transport.FromReadWriteCloser(s)
	defer sim.Close()
	dir := t.TempDir()
	raw, _ := os.ReadFile("testdata/v1identity/identity.json")
	path := filepath.Join(dir, "identity.json")
	os.WriteFile(path, raw, 0o600)
	id, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if id.Bound || id.EpochIndex != 0 || id.PrimaryName != nil {
		t.Fatalf("a version 1 identity loaded as %+v", id)
	}
	persist := func(id Identity) error { return SaveIdentity(path, id) }
	check := func(e *Engine) {
		t.Helper()
		d := sha256.Sum256([]byte("m"))
		err := e.UseCredential(cred, sha256.Sum256([]byte("example.org")), func(k *Key) error {
			sig, err := k.Sign(nil, d[:], nil)
			if err == nil && !ecdsa.VerifyASN1(pub, d[:], sig) {
				return errors.New("signature does not verify")
			}
			return err
		})
		if err != nil {
			t.Fatalf("version 1 credential: %v", err)
		}
		if got, err := e.CredRandom(cred, true); err != nil || !bytes.Equal(got, cr) {
			t.Fatalf("version 1 hmac-secret output changed (%v)", err)
		}
		if got, err := e.Unseal(sealed); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("version 1 sealed secret: %v", err)
		}
	}
	e, id, err := New(sim, id, Options{Persist: persist})
	if err != nil {
		t.Fatal(err)
	}
	if err := persist(id); err != nil {
		t.Fatal(err)
	}
	if id.Bound || id.EpochIndex == 0 || id.PrimaryName == nil {
		t.Fatalf("migrated identity %+v", id)
	}
	check(e)
	e.Close()
	migrated, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	e, _, err = New(sim, migrated, Options{Persist: persist})
	if err != nil {
		t.Fatalf("restart after migration: %v", err)
	}
	check(e)
	if _, err := e.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := signWith(e, cred, "example.org"); !errors.Is(err, ErrForeignCredential) {
		t.Fatalf("version 1 credential after the reset: %v", err)
	}
	if got, err := e.CredRandom(cred, true); err != nil || bytes.Equal(got, cr) {
		t.Fatalf("version 1 hmac-secret output after the reset (%v)", err)
	}
	e.Close()
	after, err := LoadIdentity(path)
	if err != nil || !after.Bound {
		t.Fatalf("identity after the reset: %+v, %v", after, err)
	}
	if _, _, err := New(sim, migrated, Options{}); !errors.Is(err, ErrStaleIdentity) {
		t.Fatalf("restored migrated identity after a reset: %v", err)
	}
	// And the version 1 file from before the upgrade.
	os.WriteFile(path, raw, 0o600)
	v1, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := New(sim, v1, Options{}); !errors.Is(err, ErrStaleIdentity) {
		t.Fatalf("restored version 1 identity after the reset: %v", err)
	}
	e, _, err = New(sim, after, Options{})
	if err != nil {
		t.Fatalf("start after the reset: %v", err)
	}
	e.Close()
}

// TestIdentityFileRoundTrip: everything a reset and a start rely on
// (the pending record included) survives identity.json, and malformed
// files are refused with an error, never loaded half.
func TestIdentityFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.json")
	id := NewIdentity()
	id.CounterIndex, id.CounterBase, id.PINIndex = 0x01800001, 7, 0x01800002
	id.HMACKey, id.PrimaryName, id.EpochName, id.StorageKey = []byte{1, 2}, []byte{3}, []byte{4}, []byte{5, 6}
	id.EpochIndex, id.Epoch = 0x01800003, 41
	id.Pending = &PendingReset{Epoch: 42, PrimaryName: []byte{9}}
	id.Pending.Seed[0] = 1
	if err := SaveIdentity(path, id); err != nil {
		t.Fatal(err)
	}
	got, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(id)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Fatalf("round trip:\n%s\n%s", a, b)
	}
	for name, body := range map[string]string{
		"unknown version":           `{"version": 3, "seed": "` + hex.EncodeToString(id.Seed[:]) + `"}`,
		"version 1 with an epoch":   `{"version": 1, "seed": "` + hex.EncodeToString(id.Seed[:]) + `", "epoch_nv_index": 25165825}`,
		"bound without storage key": `{"version": 2, "seed": "` + hex.EncodeToString(id.Seed[:]) + `", "epoch_nv_index": 25165825, "epoch_nv_name": "01", "primary_name": "02", "epoch": 1, "epoch_bound": true}`,
		"pending behind the epoch":  `{"version": 2, "seed": "` + hex.EncodeToString(id.Seed[:]) + `", "epoch_nv_index": 25165825, "epoch_nv_name": "01", "primary_name": "02", "epoch": 5, "pending_reset": {"seed": "` + hex.EncodeToString(id.Seed[:]) + `", "epoch": 5, "primary_name": "03"}}`,
		"bad pending seed":          `{"version": 2, "seed": "` + hex.EncodeToString(id.Seed[:]) + `", "epoch_nv_index": 25165825, "epoch_nv_name": "01", "primary_name": "02", "epoch": 5, "pending_reset": {"seed": "zz", "epoch": 6, "primary_name": "03"}}`,
		"epoch index outside range": `{"version": 2, "seed": "` + hex.EncodeToString(id.Seed[:]) + `", "epoch_nv_index": 1, "epoch_nv_name": "01", "primary_name": "02"}`,
	} {
		os.WriteFile(path, []byte(body), 0o600)
		if _, err := LoadIdentity(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func loadedSessions(t *testing.T, tr transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTHMACSession) << 24, PropertyCount: 64}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := rsp.CapabilityData.Data.Handles()
	return h.Handle
}

// TestStaleSessionsFlushed: a daemon killed between starting a policy
// session and using it (the epoch policy) leaves it loaded; on a bare TPM
// the next start flushes it, or two such kills and the session pool fill
// the TPM's three session slots (interop.TestResetKilledBySIGKILL found
// it: the TPM lists a loaded policy session as 0x03xxxxxx among the loaded
// sessions, 0x02). A policy that fails leaves no session either.
func TestStaleSessionsFlushed(t *testing.T) {
	sim := openSim(t)
	defer sim.Close()
	for _, start := range []func(transport.TPM, tpm2.TPMIAlgHash, int, ...tpm2.AuthOption) (tpm2.Session, func() error, error){
		tpm2.PolicySession, tpm2.PolicySession, tpm2.HMACSession} {
		if _, _, err := start(sim, tpm2.TPMAlgSHA256, 16); err != nil {
			t.Fatal(err)
		}
	}
	e, id, err := New(sim, NewIdentity(), Options{FlushStale: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := loadedSessions(t, sim); len(got) != 1 {
		t.Fatalf("after a start on a bare TPM: sessions %x loaded, want the pool's one", got)
	}
	// An epoch policy that fails (the epoch is not the one asked for)
	// leaves nothing loaded.
	x := &Engine{t: sim, log: e.log, opt: e.opt, id: id}
	x.id.Epoch--
	tmpl, _ := x.primaryTemplate(x.id.Seed, true, x.id.Epoch)
	p, pub, err := x.createPrimary(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.attach(p, pub); !errors.Is(err, tpm2.TPMRCPolicy) {
		t.Fatalf("storage key at the wrong epoch: %v", err)
	}
	if got := loadedSessions(t, sim); len(got) != 1 {
		t.Fatalf("after a failed epoch policy: sessions %x loaded", got)
	}
	e.Close()
}
