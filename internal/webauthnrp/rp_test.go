package webauthnrp_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/internal/tokentest"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/internal/webauthnrp"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

func client(t *testing.T) *ctaphid.Client {
	return tokentest.Serve(t, tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{}), nil)
}

func TestRegisterAndLoginVerifiedByGoWebauthn(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	rp, err := webauthnrp.New("example.org")
	if err != nil {
		t.Fatal(err)
	}
	u := &webauthnrp.User{ID: []byte("user-1"), Name: "bob"}
	cred, err := rp.Register(ctx, c, u)
	if err != nil {
		t.Fatal(err)
	}
	if cred.AttestationFormat != "fido-u2f" {
		t.Errorf("attestation format %q", cred.AttestationFormat)
	}
	first, err := rp.Login(ctx, c, u, false)
	if err != nil {
		t.Fatal(err)
	}
	second, err := rp.Login(ctx, c, u, false)
	if err != nil {
		t.Fatal(err)
	}
	if second.Authenticator.SignCount <= first.Authenticator.SignCount {
		t.Errorf("counter %d then %d", first.Authenticator.SignCount, second.Authenticator.SignCount)
	}
	if _, err := rp.Login(ctx, c, u, true); err == nil {
		t.Fatal("tampered signature verified")
	}
	// Check-only for our handle answers 0x6985, as U2F says.
	var se *u2fhost.StatusError
	_, err = u2fhost.Authenticate(ctx, c, [32]byte{}, [32]byte(rpHash("example.org")), cred.ID, 0x07)
	if !errors.As(err, &se) || se.SW != 0x6985 {
		t.Fatalf("check-only: %v", err)
	}
	other, _ := webauthnrp.New("other.example")
	if _, err := other.Login(ctx, c, &webauthnrp.User{ID: u.ID, Name: "bob", Credentials: u.Credentials}, false); err == nil || !strings.Contains(err.Error(), "6A80") {
		t.Fatalf("credential used for another RP: %v", err)
	}
}

func rpHash(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

func TestCTAP2RegisterAndLoginVerifiedByGoWebauthn(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	rp, _ := webauthnrp.New("example.org")
	u := &webauthnrp.User{ID: []byte("user-2"), Name: "carol"}
	cred, err := rp.RegisterCTAP2(ctx, c, u)
	if err != nil {
		t.Fatal(err)
	}
	if cred.AttestationFormat != "packed" {
		t.Errorf("attestation format %q", cred.AttestationFormat)
	}
	a, err := rp.LoginCTAP2(ctx, c, u)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rp.LoginCTAP2(ctx, c, u)
	if err != nil {
		t.Fatal(err)
	}
	if b.Authenticator.SignCount <= a.Authenticator.SignCount {
		t.Errorf("counter %d then %d", a.Authenticator.SignCount, b.Authenticator.SignCount)
	}
}
