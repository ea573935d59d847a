package token_test

import (
	"bytes"
	"context"
	"crypto"
	"path/filepath"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// cancelDuringKeygen is a Keys whose key generation is interrupted by the
// client's CANCEL, as one arriving during a slow RSA key generation.
type cancelDuringKeygen struct {
	token.TPMKeys
	cancel context.CancelFunc
}

func (c cancelDuringKeygen) NewCredential(rp [32]byte, alg int64, p token.CredentialPolicy, fn func([]byte, crypto.Signer) error) error {
	return c.TPMKeys.NewCredential(rp, alg, p, func(id []byte, k crypto.Signer) error {
		c.cancel()
		return fn(id, k)
	})
}

func TestCancelDuringKeyGenerationStoresNothing(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(context.Background())
	a := token.New(token.Config{Keys: cancelDuringKeygen{token.TPMKeys{Engine: e}, cancel}, Presence: presence.Always{}, Resident: store})
	defer a.Close()
	msg := []byte{ctap2.CmdMakeCredential}
	params, err := ctap2.Marshal(makeCredParams("example.org", map[int]any{
		4: []map[string]any{{"type": "public-key", "alg": -257}},
		7: map[string]bool{"rk": true},
	}))
	if err != nil {
		t.Fatal(err)
	}
	rsp := a.HandleCBOR(ctx, append(msg, params...), nil)
	if ctap2.Status(rsp[0]) != ctap2.ErrKeepaliveCancel {
		t.Fatalf("makeCredential cancelled during key generation: %v, want KEEPALIVE_CANCEL", ctap2.Status(rsp[0]))
	}
	if store.Remaining() != 10 {
		t.Error("a cancelled registration stored a credential")
	}
}

// orderKeys records whether the user had been asked when the key was made.
type orderKeys struct {
	token.TPMKeys
	asked *bool
	first *bool
}

func (o orderKeys) NewCredential(rp [32]byte, alg int64, p token.CredentialPolicy, fn func([]byte, crypto.Signer) error) error {
	*o.first = *o.asked
	return o.TPMKeys.NewCredential(rp, alg, p, fn)
}

type recordingPrompter struct{ asked *bool }

func (r recordingPrompter) Confirm(context.Context, presence.Request) error {
	*r.asked = true
	return nil
}

// The user is asked before the key is made: an RSA key can take seconds,
// and the prompt must not wait for it.
func TestPromptBeforeKeyGeneration(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	var asked, askedFirst bool
	a := token.New(token.Config{Keys: orderKeys{token.TPMKeys{Engine: e}, &asked, &askedFirst}, Presence: recordingPrompter{&asked}})
	defer a.Close()
	st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", map[int]any{4: []map[string]any{{"type": "public-key", "alg": -257}}}))
	if st != ctap2.OK || !askedFirst {
		t.Fatalf("makeCredential: %v; user asked before the key was made: %v", st, askedFirst)
	}
}
