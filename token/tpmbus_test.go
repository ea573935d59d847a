package token_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-tpm/tpm2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// TestNoPINOrSecretOnTheTPMBus drives the token as a client would (PIN
// protocol 2): set a PIN, a wrong PIN, a pinUvAuthToken, change the PIN, a
// token with the new PIN, hmac-secret with and without UV, while every
// byte between the engine and the TPM is recorded, with the credential
// store's key unsealed at start as the daemon does. None of the PINs, in
// any form the token derives (SHA-256, pinHash, its hex: the PIN index's
// authValue), nor the store key, the pinUvAuthTokens, CredRandom or the
// hmac-secret output may appear in the recording.
func TestNoPINOrSecretOnTheTPMBus(t *testing.T) {
	rec := tpmtest.NewRecorder(tpmtest.Simulator(t))
	e := tpmtest.Engine(t, rec, tpm.Options{})
	storeKey, blob, err := e.Seal()
	if err != nil {
		t.Fatal(err)
	}
	if k, err := e.Unseal(blob); err != nil || !bytes.Equal(k, storeKey) {
		t.Fatalf("Unseal: %v", err)
	}
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), storeKey, 50)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var (
		mu  sync.Mutex
		now = time.Now()
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, Resident: store,
		PIN: token.TPMPIN{Engine: e}, Secrets: token.TPMKeys{Engine: e}, Logger: testLogger(t), Now: clock})
	t.Cleanup(a.Close)

	const (
		first  = "first bus PIN 4711"
		second = "second bus PIN 0815"
		wrong  = "wrong bus PIN 1234"
	)
	secrets := map[string][]byte{"credential-store key": bytes.Clone(storeKey)}
	for _, p := range []string{first, second, wrong} {
		full := sha256.Sum256([]byte(p))
		secrets["PIN "+p] = []byte(p)
		secrets["SHA-256 of "+p] = full[:]
		secrets["pinHash of "+p] = full[:16]
		secrets["hex pinHash of "+p] = []byte(hex.EncodeToString(full[:16]))
		secrets["HEX pinHash of "+p] = []byte(strings.ToUpper(hex.EncodeToString(full[:16])))
	}

	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded(first)); st != ctap2.OK {
		t.Fatalf("setPIN: %v", st)
	}
	if st := p.getToken(wrong, ctap2.PermGetAssertion, "example.org"); st != ctap2.ErrPINInvalid {
		t.Fatalf("wrong PIN: %v", st)
	}
	mu.Lock()
	now = now.Add(2 * time.Second) // past the delay after a wrong PIN
	mu.Unlock()
	if st := p.getToken(first, ctap2.PermGetAssertion|ctap2.PermMakeCredential, "example.org"); st != ctap2.OK {
		t.Fatalf("getPinUvAuthToken: %v", st)
	}
	secrets["first pinUvAuthToken"] = p.token
	if st := p.changePIN(first, second); st != ctap2.OK {
		t.Fatalf("changePIN: %v", st)
	}
	if st := p.getToken(second, ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
		t.Fatalf("getPinUvAuthToken with the new PIN: %v", st)
	}
	secrets["second pinUvAuthToken"] = p.token

	st, body := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{6: map[string]any{"hmac-secret": true}}))
	var mc ctap2.MakeCredentialResponse
	if st != ctap2.OK || cbor.Unmarshal(body, &mc) != nil {
		t.Fatalf("makeCredential with hmac-secret: %v", st)
	}
	n := int(mc.AuthData[53])<<8 | int(mc.AuthData[54])
	cred := bytes.Clone(mc.AuthData[55 : 55+n])
	salt := bytes.Repeat([]byte{0xa5}, 32)
	// The makeCredential collected presence and so used up the token
	// (CTAP 2.1 section 6.5.2.1): a fresh one for the assertion.
	if st := p.getToken(second, ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
		t.Fatalf("getPinUvAuthToken for the assertion: %v", st)
	}
	secrets["third pinUvAuthToken"] = p.token
	tok := p.token
	st, withUV, _ := p.hmacSecretAssert("example.org", cred, salt, true)
	if st != ctap2.OK {
		t.Fatalf("hmac-secret with UV: %v", st)
	}
	p.token = tok
	st, withoutUV, _ := p.hmacSecretAssert("example.org", cred, salt, false)
	if st != ctap2.OK {
		t.Fatalf("hmac-secret: %v", st)
	}
	secrets["hmac-secret output (uv)"], secrets["hmac-secret output"] = withUV, withoutUV
	for _, uv := range []bool{false, true} {
		cr, err := e.CredRandom(cred, uv)
		if err != nil {
			t.Fatal(err)
		}
		secrets["CredRandom"+map[bool]string{false: "", true: " (uv)"}[uv]] = cr
	}

	if len(rec.Exchanges()) == 0 {
		t.Fatal("nothing recorded")
	}
	for what, s := range secrets {
		if hits := rec.Find(s); len(hits) > 0 {
			t.Errorf("%s crossed the TPM interface in the clear: %s", what, strings.Join(hits, ", "))
		}
	}
	t.Logf("%d TPM commands recorded, %d secrets searched", len(rec.Exchanges()), len(secrets))
}

// TestPINWriteFailureIsAnErrorToTheClient: when identity.json cannot be
// written, setPIN and changePIN answer an error and the PIN is as it was
// (tpm.TestPINWriteFailureRollsBack has every write in turn).
func TestPINWriteFailureIsAnErrorToTheClient(t *testing.T) {
	var (
		mu   sync.Mutex
		fail int // the how-manieth write from now fails; 0: none
	)
	persist := func(tpm.Identity) error {
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			if fail--; fail == 0 {
				return errors.New("injected: read-only file system")
			}
		}
		return nil
	}
	// The second write of a set or change is the one that makes the new
	// PIN index live (the first records it as pending).
	failSecondWrite := func() { mu.Lock(); fail = 2; mu.Unlock() }
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{Persist: persist})
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, PIN: token.TPMPIN{Engine: e}, Logger: testLogger(t)})
	t.Cleanup(a.Close)
	p := newPlatform(t, a, 2)

	failSecondWrite()
	if st := p.setPIN(padded("first PIN")); st == ctap2.OK {
		t.Fatal("setPIN answered OK though identity.json was not written")
	}
	if st, err := e.PINStatus(); err != nil || st.Set {
		t.Fatalf("after a failed setPIN: %+v, %v", st, err)
	}
	if st := p.setPIN(padded("first PIN")); st != ctap2.OK {
		t.Fatalf("setPIN: %v", st)
	}
	failSecondWrite()
	if st := p.changePIN("first PIN", "second PIN"); st == ctap2.OK {
		t.Fatal("changePIN answered OK though identity.json was not written")
	}
	if st := p.getToken("first PIN", ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
		t.Fatalf("the old PIN after a failed change: %v", st)
	}
	if st := p.getToken("second PIN", ctap2.PermGetAssertion, "example.org"); st != ctap2.ErrPINInvalid {
		t.Fatalf("the new PIN after a failed change: %v", st)
	}
}

// TestSubstitutedPINIndexGivesNoToken replaces the PIN index, with owner
// authorization, by an ordinary index whose authValue is the pinHash of a
// PIN the attacker chose: the client that sends that PIN gets
// PIN_BLOCKED and no pinUvAuthToken (tpm.TestPINIndexSubstituteRefused
// has more substitutes).
func TestSubstitutedPINIndexGivesNoToken(t *testing.T) {
	sim := tpmtest.Simulator(t)
	e := tpmtest.Engine(t, sim, tpm.Options{})
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, PIN: token.TPMPIN{Engine: e}, Logger: testLogger(t)})
	t.Cleanup(a.Close)
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("the real PIN")); st != ctap2.OK {
		t.Fatalf("setPIN: %v", st)
	}
	idx := tpm2.TPMHandle(e.Identity().PINIndex)
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	rp, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: idx, Name: rp.NVName}}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	auth := []byte(hex.EncodeToString(pinHashOf("the attacker's PIN")))
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, Auth: tpm2.TPM2BAuth{Buffer: auth}, PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: idx, NameAlg: tpm2.TPMAlgSHA256, DataSize: 8,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthRead: true, AuthWrite: true, OwnerRead: true, NoDA: true},
	})}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	if rp, err = (tpm2.NVReadPublic{NVIndex: idx}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVWrite{
		AuthHandle: tpm2.AuthHandle{Handle: idx, Name: rp.NVName, Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(auth))},
		NVIndex:    tpm2.NamedHandle{Handle: idx, Name: rp.NVName},
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: []byte{0, 0, 0, 0, 0, 0, 0, 8}},
	}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	p.token = nil
	if st := p.getToken("the attacker's PIN", ctap2.PermGetAssertion, "example.org"); st != ctap2.ErrPINBlocked || p.token != nil {
		t.Fatalf("the substitute's PIN: %v (token %x), want PIN_BLOCKED and no token", st, p.token)
	}
	if r, _ := retries(t, a); r != 0 {
		t.Fatalf("getPINRetries on a substituted index: %d, want 0", r)
	}
}
