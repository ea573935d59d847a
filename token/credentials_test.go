package token_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// credTestbed is one installation: an engine, a credential store and a
// token, on a TPM that other installations may share.
type credTestbed struct {
	e     *tpm.Engine
	store *credstore.Store
	a     *token.Authenticator
}

func newCredTestbed(t *testing.T, tpmT transport.TPM, p presence.Prompter, wrap func(*credstore.Store) token.ResidentStore) credTestbed {
	t.Helper()
	e := tpmtest.Engine(t, tpmT, tpm.Options{})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var resident token.ResidentStore = store
	if wrap != nil {
		resident = wrap(store)
	}
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: p, Resident: resident, Logger: testLogger(t)})
	t.Cleanup(a.Close)
	return credTestbed{e: e, store: store, a: a}
}

// register makes a credential with makeCredential's extra parameters
// (options 7, extensions 6) and returns its ID.
func (b credTestbed) register(t *testing.T, rp, user string, rk bool, credProtect int) []byte {
	t.Helper()
	extra := map[int]any{3: map[string]any{"id": []byte(user), "name": user}}
	if rk {
		extra[7] = map[string]bool{"rk": true}
	}
	if credProtect != 0 {
		extra[6] = map[string]any{"credProtect": credProtect}
	}
	st, body := call(t, b.a, ctap2.CmdMakeCredential, makeCredParams(rp, extra))
	if st != ctap2.OK {
		t.Fatalf("makeCredential(%s, %s): %v", rp, user, st)
	}
	var rsp struct {
		AuthData []byte `cbor:"2,keyasint"`
	}
	if err := cbor.Unmarshal(body, &rsp); err != nil {
		t.Fatal(err)
	}
	n := int(rsp.AuthData[53])<<8 | int(rsp.AuthData[54])
	return append([]byte(nil), rsp.AuthData[55:55+n]...)
}

// assertWith sends a getAssertion naming ids (none: discoverable) and
// returns the status and the credential ID that signed.
func assertWith(t *testing.T, a *token.Authenticator, rp string, ids ...[]byte) (ctap2.Status, []byte) {
	t.Helper()
	cdh := sha256.Sum256([]byte(t.Name()))
	p := map[int]any{1: rp, 2: cdh[:]}
	if len(ids) > 0 {
		var list []map[string]any
		for _, id := range ids {
			list = append(list, map[string]any{"type": "public-key", "id": id})
		}
		p[3] = list
	}
	st, body := call(t, a, ctap2.CmdGetAssertion, p)
	if st != ctap2.OK {
		return st, nil
	}
	var rsp struct {
		Cred struct {
			ID []byte `cbor:"id"`
		} `cbor:"1,keyasint"`
	}
	if err := cbor.Unmarshal(body, &rsp); err != nil {
		t.Fatal(err)
	}
	return st, rsp.Cred.ID
}

func u2fAuthenticate(a *token.Authenticator, ctl byte, rp string, handle []byte) uint16 {
	app := sha256.Sum256([]byte(rp))
	return sw(a.HandleAPDU(context.Background(), authenticateAPDU(app, sha256.Sum256([]byte("u2f "+rp)), handle, ctl)))
}

// An allowList that names the user's key from another installation first
// (another laptop, or this one before a reinstall) still finds this one:
// every entry is considered.
func TestAllowListFindsOursAmongOtherInstallations(t *testing.T) {
	sim := tpmtest.Simulator(t)
	here := newCredTestbed(t, sim, presence.Always{}, nil)
	there := newCredTestbed(t, sim, presence.Always{}, nil)
	theirs := there.register(t, "example.org", "alice", false, 0)
	ours := here.register(t, "example.org", "alice", false, 0)
	st, used := assertWith(t, here.a, "example.org", theirs, ours)
	if st != ctap2.OK || !bytes.Equal(used, ours) {
		t.Fatalf("allowList [theirs, ours]: %v, signed with ours %v", st, bytes.Equal(used, ours))
	}

	// The same with IDs made before IDs carried a tag: the TPM tells.
	rp := sha256.Sum256([]byte("example.org"))
	theirLegacy, err := there.e.TestOnlyLegacyCredential(rp)
	if err != nil {
		t.Fatal(err)
	}
	ourLegacy, err := here.e.TestOnlyLegacyCredential(rp)
	if err != nil {
		t.Fatal(err)
	}
	st, used = assertWith(t, here.a, "example.org", theirLegacy, ourLegacy)
	if st != ctap2.OK || !bytes.Equal(used, ourLegacy) {
		t.Fatalf("allowList [their legacy, our legacy]: %v", st)
	}
	if st, _ := assertWith(t, here.a, "example.org", theirLegacy, theirs); st != ctap2.ErrNoCredentials {
		t.Fatalf("allowList of only other installations' IDs: %v, want NO_CREDENTIALS", st)
	}
	// And over U2F.
	if got := u2fAuthenticate(here.a, 0x07, "example.org", theirs); got != token.SWWrongData {
		t.Errorf("U2F check-only with another installation's handle: %04x, want 6A80", got)
	}
}

// lyingStore reports every stored credential as credProtect 0: what the
// token believes must come from the credential ID, not the store.
type lyingStore struct{ *credstore.Store }

func (l lyingStore) List(rp [32]byte) ([]credstore.Credential, error) {
	cs, err := l.Store.List(rp)
	for i := range cs {
		cs[i].CredProtect = 0
	}
	return cs, err
}

func (l lyingStore) Find(id []byte) (*credstore.Credential, bool) {
	c, ok := l.Store.Find(id)
	if ok {
		c.CredProtect = 0
	}
	return c, ok
}

func TestCredProtectEnforcedFromTheCredentialID(t *testing.T) {
	b := newCredTestbed(t, tpmtest.Simulator(t), presence.Always{}, func(s *credstore.Store) token.ResidentStore { return lyingStore{s} })
	// Non-discoverable, credProtect 3: the store never knew it.
	required := b.register(t, "example.org", "alice", false, 3)
	if st, _ := assertWith(t, b.a, "example.org", required); st != ctap2.ErrNoCredentials {
		t.Errorf("credProtect 3 without UV: %v, want NO_CREDENTIALS", st)
	}
	for _, ctl := range []byte{0x03, 0x07, 0x08} {
		if got := u2fAuthenticate(b.a, ctl, "example.org", required); got != token.SWWrongData {
			t.Errorf("U2F (P1 %#x) with a credProtect 3 handle: %04x, want 6A80", ctl, got)
		}
	}
	withList := b.register(t, "example.org", "bob", false, 2)
	if st, _ := assertWith(t, b.a, "example.org", withList); st != ctap2.OK {
		t.Errorf("credProtect 2 named in the allowList: %v", st)
	}
	// Discoverable: the store says credProtect 0, the IDs say otherwise.
	b.register(t, "passkeys.example", "carol", true, 2)
	b.register(t, "passkeys.example", "dave", true, 3)
	if st, _ := assertWith(t, b.a, "passkeys.example"); st != ctap2.ErrNoCredentials {
		t.Errorf("discoverable credProtect 2 and 3 without an allowList or UV: %v, want NO_CREDENTIALS", st)
	}
	open := b.register(t, "passkeys.example", "erin", true, 1)
	if st, used := assertWith(t, b.a, "passkeys.example"); st != ctap2.OK || !bytes.Equal(used, open) {
		t.Errorf("discoverable credProtect 1: %v", st)
	}
}

func TestDeletedOrReplacedCredentialNeverSigns(t *testing.T) {
	b := newCredTestbed(t, tpmtest.Simulator(t), presence.Always{}, nil)
	first := b.register(t, "example.org", "alice", true, 0)
	if st, _ := assertWith(t, b.a, "example.org", first); st != ctap2.OK {
		t.Fatalf("before delete: %v", st)
	}
	if err := b.store.Delete(first); err != nil {
		t.Fatal(err)
	}
	if st, _ := assertWith(t, b.a, "example.org", first); st != ctap2.ErrNoCredentials {
		t.Errorf("deleted credential named in the allowList: %v, want NO_CREDENTIALS", st)
	}
	if got := u2fAuthenticate(b.a, 0x03, "example.org", first); got != token.SWWrongData {
		t.Errorf("deleted credential over U2F: %04x, want 6A80", got)
	}
	// A new registration for the same user replaces (overwrites) the old.
	old := b.register(t, "example.org", "bob", true, 0)
	replacement := b.register(t, "example.org", "bob", true, 0)
	if st, _ := assertWith(t, b.a, "example.org", old); st != ctap2.ErrNoCredentials {
		t.Errorf("replaced credential: %v, want NO_CREDENTIALS", st)
	}
	if st, used := assertWith(t, b.a, "example.org", old, replacement); st != ctap2.OK || !bytes.Equal(used, replacement) {
		t.Errorf("allowList [replaced, replacement]: %v", st)
	}
	// A store entry lost with the file is as good as deleted.
	lost := b.register(t, "lost.example", "carol", true, 0)
	if err := b.store.Reset(bytes.Repeat([]byte{2}, 32)); err != nil {
		t.Fatal(err)
	}
	if st, _ := assertWith(t, b.a, "lost.example", lost); st != ctap2.ErrNoCredentials {
		t.Errorf("discoverable credential missing from the store: %v, want NO_CREDENTIALS", st)
	}
	// Non-discoverable credentials never live in the store.
	plain := b.register(t, "lost.example", "dave", false, 0)
	if st, _ := assertWith(t, b.a, "lost.example", plain); st != ctap2.OK {
		t.Errorf("non-discoverable credential: %v", st)
	}
}

// Legacy (version-1) IDs keep the semantics they had: credProtect from
// the store, and, new, refused once deleted.
func TestLegacyCredentialsKeepTheirSemantics(t *testing.T) {
	b := newCredTestbed(t, tpmtest.Simulator(t), presence.Always{}, nil)
	rp := sha256.Sum256([]byte("example.org"))
	plain, err := b.e.TestOnlyLegacyCredential(rp)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := assertWith(t, b.a, "example.org", plain); st != ctap2.OK {
		t.Errorf("legacy non-discoverable credential: %v", st)
	}
	if got := u2fAuthenticate(b.a, 0x03, "example.org", plain); got != token.SWNoError {
		t.Errorf("legacy handle over U2F: %04x", got)
	}
	resident, err := b.e.TestOnlyLegacyCredential(rp)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.store.Put(credstore.Credential{ID: resident, RPID: "example.org", UserID: []byte("u"), CredProtect: 2}); err != nil {
		t.Fatal(err)
	}
	if st, _ := assertWith(t, b.a, "example.org"); st != ctap2.ErrNoCredentials {
		t.Errorf("legacy credProtect 2 (from the store) discovered without UV: %v", st)
	}
	if st, _ := assertWith(t, b.a, "example.org", resident); st != ctap2.OK {
		t.Errorf("legacy credProtect 2 in the allowList: %v", st)
	}
	if err := b.store.Delete(resident); err != nil {
		t.Fatal(err)
	}
	if st, _ := assertWith(t, b.a, "example.org", resident); st != ctap2.ErrNoCredentials {
		t.Errorf("deleted legacy credential: %v, want NO_CREDENTIALS", st)
	}
}

func TestExcludeList(t *testing.T) {
	s := &scripted{answers: make(chan error, 8)}
	faulty := tpmtest.NewFaulty(tpmtest.Simulator(t))
	b := newCredTestbed(t, faulty, s, nil)
	s.answers <- nil
	required := b.register(t, "example.org", "alice", false, 3)
	s.answers <- nil
	registered := b.register(t, "example.org", "bob", false, 0)
	exclude := func(ids ...[]byte) map[int]any {
		var list []map[string]any
		for _, id := range ids {
			list = append(list, map[string]any{"type": "public-key", "id": id})
		}
		return makeCredParams("example.org", map[int]any{5: list})
	}
	// credProtect 3 without UV: left out, the registration goes on.
	s.answers <- nil
	if st, _ := call(t, b.a, ctap2.CmdMakeCredential, exclude(required)); st != ctap2.OK {
		t.Errorf("excludeList with a credProtect 3 credential and no UV: %v, want OK", st)
	}
	// A match: the user is asked, and whatever the answer the platform
	// learns that the key is registered.
	for _, answer := range []error{nil, presence.ErrDenied, presence.ErrTimeout} {
		asked := s.count()
		s.answers <- answer
		if st, _ := call(t, b.a, ctap2.CmdMakeCredential, exclude([]byte("not ours"), registered)); st != ctap2.ErrCredentialExcluded {
			t.Errorf("excluded credential, presence %v: %v, want CREDENTIAL_EXCLUDED", answer, st)
		}
		if s.count() != asked+1 {
			t.Errorf("presence %v: asked %d times, want 1", answer, s.count()-asked)
		}
	}
	// A TPM failure while checking a legacy ID never registers a duplicate.
	legacy, err := b.e.TestOnlyLegacyCredential(sha256.Sum256([]byte("example.org")))
	if err != nil {
		t.Fatal(err)
	}
	faulty.Add(tpmtest.Fault{Command: tpm2.TPMCCLoad, Occurrence: 0, Inject: tpmtest.InjectRC, RC: tpm2.TPMRCFailure})
	before := b.store.Remaining()
	asked := s.count()
	if st, _ := call(t, b.a, ctap2.CmdMakeCredential, exclude(legacy)); st == ctap2.OK || st == ctap2.ErrCredentialExcluded {
		t.Errorf("excludeList check failed in the TPM: %v, want an error", st)
	}
	faulty.Clear()
	if s.count() != asked || b.store.Remaining() != before {
		t.Error("a registration went on after the excludeList check failed")
	}
}
