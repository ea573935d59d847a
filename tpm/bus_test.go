package tpm_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// busSecrets names every form of a PIN that must never cross the TPM
// interface in the clear: the PIN, SHA-256(PIN), the CTAP pinHash
// LEFT(SHA-256(PIN), 16), and the pinHash in hex (the authValue of the
// PIN index, docs/pin.md "Deviation"), in both cases.
func busSecrets(pins ...string) map[string][]byte {
	out := make(map[string][]byte)
	for _, p := range pins {
		full := sha256.Sum256([]byte(p))
		out["PIN "+p] = []byte(p)
		out["SHA-256 of "+p] = full[:]
		out["pinHash of "+p] = full[:16]
		out["hex pinHash of "+p] = []byte(hex.EncodeToString(full[:16]))
		out["HEX pinHash of "+p] = []byte(strings.ToUpper(hex.EncodeToString(full[:16])))
	}
	return out
}

// assertNoSecretOnBus fails for every secret the recording holds in the
// clear.
func assertNoSecretOnBus(t *testing.T, rec *tpmtest.Recorder, secrets map[string][]byte) {
	t.Helper()
	if len(rec.Exchanges()) == 0 {
		t.Fatal("nothing recorded")
	}
	for what, s := range secrets {
		if hits := rec.Find(s); len(hits) > 0 {
			t.Errorf("%s crossed the TPM interface in the clear: %s", what, strings.Join(hits, ", "))
		}
	}
}

// TestNoSecretOnTheTPMBus records every byte between the engine and the
// TPM while a PIN is set, checked right and wrong, changed, checked again
// after a restart and removed, while the credential store's key is sealed
// and unsealed and while hmac-secret's CredRandom is computed, and
// searches the recording for each secret: none may appear. On the
// simulator and on swtpm (libtpms), which also shows that a real TPM
// takes the encrypted authValue and public areas as the engine checks
// them.
func TestNoSecretOnTheTPMBus(t *testing.T) {
	for _, b := range tpmtest.Backends {
		t.Run(b.Name, func(t *testing.T) { testNoSecretOnTheTPMBus(t, b.Open(t)) })
	}
}

func testNoSecretOnTheTPMBus(t *testing.T, tr transport.TPM) {
	rec := tpmtest.NewRecorder(tr)
	const (
		first  = "first bus PIN 4711"
		second = "second bus PIN 0815"
		wrong  = "wrong bus PIN 1234"
	)
	secrets := busSecrets(first, second, wrong)
	e, s := pinEngine(t, rec)
	// Derived at start with TPM2_HMAC: its response must be encrypted.
	secrets["credential ID tag key"] = tpm.IDKeyForTest(e)

	if err := e.SetPIN(pinHash(first)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CheckPIN(pinHash(first)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CheckPIN(pinHash(wrong)); !errors.Is(err, tpm.ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
	// The right PIN after a wrong one also writes the count back.
	if _, err := e.CheckPIN(pinHash(first)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ChangePIN(pinHash(wrong), pinHash(second)); !errors.Is(err, tpm.ErrWrongPIN) {
		t.Fatalf("change with a wrong PIN: %v", err)
	}
	if _, err := e.ChangePIN(pinHash(first), pinHash(second)); err != nil {
		t.Fatal(err)
	}

	key, blob, err := e.Seal()
	if err != nil {
		t.Fatal(err)
	}
	secrets["sealed credential-store key"] = key
	if got, err := e.Unseal(blob); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unseal: %v", err)
	}
	for _, uv := range []bool{false, true} {
		cr, err := e.CredRandom([]byte("a credential ID"), uv)
		if err != nil {
			t.Fatal(err)
		}
		secrets["CredRandom"+map[bool]string{false: "", true: " (uv)"}[uv]] = cr
	}
	e.Close()

	// Another process: start-up, a PIN check, the status, the removal.
	e2, _, err := tpm.New(rec, s.id, tpm.Options{Persist: s.persist})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if _, err := e2.CheckPIN(pinHash(wrong)); !errors.Is(err, tpm.ErrWrongPIN) {
		t.Fatalf("wrong PIN after restart: %v", err)
	}
	if _, err := e2.CheckPIN(pinHash(second)); err != nil {
		t.Fatal(err)
	}
	if got, err := e2.Unseal(blob); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unseal after restart: %v", err)
	}
	if err := e2.ClearPIN(); err != nil {
		t.Fatal(err)
	}
	assertNoSecretOnBus(t, rec, secrets)
	t.Logf("%d TPM commands recorded, %d secrets searched", len(rec.Exchanges()), len(secrets))
}

// TestRecorderSeesWhatCrossesTheBus is the recorder's own check: an
// authValue sent in the clear is found; the same sent under a salted
// session with parameter encryption is not (the simulator decrypts the
// command in place, so a recorder that copied after sending would find
// it there too).
func TestRecorderSeesWhatCrossesTheBus(t *testing.T) {
	sim := tpmtest.Simulator(t)
	rec := tpmtest.NewRecorder(sim)
	srk := tpmtest.CreatePrimary(t, sim)
	rp, err := tpm2.ReadPublic{ObjectHandle: srk.Handle}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	srkPub, err := rp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	enc, closeEnc, err := tpm2.HMACSession(sim, tpm2.TPMAlgSHA256, 16, tpm2.Salted(srk.Handle, *srkPub), tpm2.AESEncryption(128, tpm2.EncryptIn))
	if err != nil {
		t.Fatal(err)
	}
	defer closeEnc()
	for i, auth := range []tpm2.Session{tpm2.PasswordAuth(nil), enc} {
		secret := []byte(fmt.Sprintf("authValue number %d", i))
		idx := tpm2.TPMHandle(0x01800100 + i)
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: auth},
			Auth:       tpm2.TPM2BAuth{Buffer: secret},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{NVIndex: idx, NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthRead: true, AuthWrite: true, NoDA: true}, DataSize: 8}),
		}.Execute(rec)
		if err != nil {
			t.Fatal(err)
		}
		// The TPM got the authValue right either way.
		name, _, _ := readNV(sim, uint32(idx))
		if _, err := (tpm2.NVWrite{
			AuthHandle: tpm2.AuthHandle{Handle: idx, Name: name, Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(secret))},
			NVIndex:    tpm2.NamedHandle{Handle: idx, Name: name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: make([]byte, 8)},
		}).Execute(sim); err != nil {
			t.Fatalf("index %d: the authValue the TPM got is not ours: %v", i, err)
		}
		hits := rec.Find(secret)
		if i == 0 && len(hits) == 0 {
			t.Error("an authValue sent in the clear was not found")
		}
		if i == 1 && len(hits) != 0 {
			t.Errorf("an encrypted authValue was found: %v", hits)
		}
	}
}
