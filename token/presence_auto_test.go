package token_test

import (
	"context"
	"crypto/sha256"
	"slices"
	"sync"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// TestAutomaticPresenceSendsNoUPNeeded: under --presence=always nobody is
// asked, so a getAssertion never tells the client to touch the key (two
// KEEPALIVE reports per request saved); a real prompt still does.
func TestAutomaticPresenceSendsNoUPNeeded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p      presence.Prompter
		answer func(presence.Prompter)
		want   bool
	}{
		{"always", presence.Always{}, func(presence.Prompter) {}, false},
		{"prompt", &scripted{answers: make(chan error, 4)}, func(p presence.Prompter) { p.(*scripted).answers <- nil }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := token.New(token.Config{Keys: token.TPMKeys{Engine: tpmtestSimulatorEngine(t)}, Presence: tc.p})
			defer a.Close()
			tc.answer(tc.p)
			c := makeCredential(t, a, "example.org")
			cdh := sha256.Sum256([]byte("auto"))
			params, err := ctap2.Marshal(map[int]any{1: "example.org", 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": c.id}}})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var statuses []byte
			tc.answer(tc.p)
			rsp := a.HandleCBOR(context.Background(), append([]byte{ctap2.CmdGetAssertion}, params...), func(st byte) {
				mu.Lock()
				statuses = append(statuses, st)
				mu.Unlock()
			})
			if len(rsp) == 0 || rsp[0] != byte(ctap2.OK) {
				t.Fatalf("getAssertion: %x", rsp[:min(1, len(rsp))])
			}
			mu.Lock()
			defer mu.Unlock()
			if got := slices.Contains(statuses, 2); got != tc.want {
				t.Errorf("statuses %v: UPNEEDED sent %v, want %v", statuses, got, tc.want)
			}
		})
	}
}
