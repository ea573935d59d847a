package webauthnrp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/webauthnrp"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid/hidtest"
)

// softKey is a minimal U2F authenticator with software keys, whose
// misbehaviour a test can choose: it shows that the relying party refuses
// what the real token never sends.
type softKey struct {
	mu      sync.Mutex
	keys    map[string]*ecdsa.PrivateKey
	counter uint32 // sent as is in the next assertion
	// badAttestation flips a bit of the registration signature.
	badAttestation bool
}

func (k *softKey) Handle(_ context.Context, req ctaphid.Request) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	fail := func(sw uint16) []byte { return binary.BigEndian.AppendUint16(nil, sw) }
	a, err := token.ParseAPDU(req.Payload)
	if err != nil {
		return fail(0x6700)
	}
	switch {
	case a.INS == 0x01 && len(a.Data) == 64:
		chal, app := a.Data[:32], a.Data[32:]
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fail(0x6f00)
		}
		handle := make([]byte, 32)
		rand.Read(handle)
		k.keys[string(handle)] = key
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "soft U2F"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return fail(0x6f00)
		}
		pub, _ := key.PublicKey.Bytes()
		msg := append(append(append(append([]byte{0}, app...), chal...), handle...), pub...)
		sig := sign(key, msg)
		if k.badAttestation {
			sig[len(sig)-1] ^= 1
		}
		rsp := append(append([]byte{5}, pub...), byte(len(handle)))
		rsp = append(append(append(append(rsp, handle...), cert...), sig...), 0x90, 0)
		return rsp
	case a.INS == 0x02 && len(a.Data) > 65 && len(a.Data) == 65+int(a.Data[64]):
		chal, app, handle := a.Data[:32], a.Data[32:64], a.Data[65:]
		key, ok := k.keys[string(handle)]
		if !ok {
			return fail(0x6a80)
		}
		if a.P1 == 0x07 {
			return fail(0x6985)
		}
		fc := binary.BigEndian.AppendUint32([]byte{1}, k.counter)
		sig := sign(key, append(append(append([]byte(nil), app...), fc...), chal...))
		return append(append(fc, sig...), 0x90, 0)
	}
	return fail(0x6d00)
}

func sign(key *ecdsa.PrivateKey, msg []byte) []byte {
	h := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return sig
}

func serveSoft(t *testing.T, k *softKey) *ctaphid.Client {
	t.Helper()
	k.keys = map[string]*ecdsa.PrivateKey{}
	dev, host := hidtest.NewPipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctaphid.NewServer(dev, k, ctaphid.Options{}).Serve(ctx)
	}()
	t.Cleanup(func() { cancel(); host.Close(); <-done })
	c := ctaphid.NewClient(host)
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCounterMustMoveForward(t *testing.T) {
	k := &softKey{}
	c := serveSoft(t, k)
	ctx := context.Background()
	rp, err := webauthnrp.New("example.org")
	if err != nil {
		t.Fatal(err)
	}
	u := &webauthnrp.User{ID: []byte("user-3"), Name: "dave"}
	if _, err := rp.Register(ctx, c, u); err != nil {
		t.Fatal(err)
	}
	k.counter = 5
	if _, err := rp.Login(ctx, c, u, false); err != nil {
		t.Fatal(err)
	}
	_, err = rp.Login(ctx, c, u, false) // the counter stays at 5
	if err == nil || !strings.Contains(err.Error(), "did not move") {
		t.Fatalf("repeated counter: %v", err)
	}
	if got := u.Credentials[0].Authenticator.SignCount; got != 5 {
		t.Errorf("stored counter %d after a refused login, want 5", got)
	}
	k.counter = 6
	if cred, err := rp.Login(ctx, c, u, false); err != nil || cred.Authenticator.SignCount != 6 {
		t.Fatalf("counter 6: %v", err)
	}
}

func TestBadAttestationSignatureRejected(t *testing.T) {
	k := &softKey{badAttestation: true}
	c := serveSoft(t, k)
	rp, err := webauthnrp.New("example.org")
	if err != nil {
		t.Fatal(err)
	}
	u := &webauthnrp.User{ID: []byte("user-4"), Name: "erin"}
	if _, err := rp.Register(context.Background(), c, u); err == nil {
		t.Fatal("a registration with a broken fido-u2f signature was accepted")
	} else {
		t.Log(err)
	}
	if len(u.Credentials) != 0 {
		t.Error("a rejected credential was stored")
	}
	// The same key with a good signature registers: the rejection above
	// was the signature's doing.
	k.badAttestation = false
	if _, err := rp.Register(context.Background(), c, u); err != nil {
		t.Fatal(err)
	}
}
