// Package tokentest runs a token for tests: the authenticator on a TPM
// engine behind a CTAPHID server over the in-memory pipe, with a client
// that has a channel allocated.
package tokentest

import (
	"context"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid/hidtest"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// Serve starts a token on e that approves every presence check, with
// guard as its replay store (nil for none), and returns a client on it.
// Everything stops when the test ends.
func Serve(tb testing.TB, e *tpm.Engine, guard token.ReplayGuard) *ctaphid.Client {
	tb.Helper()
	cfg := token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}}
	if guard != nil {
		cfg.Replay = guard
	}
	a := token.New(cfg)
	dev, host := hidtest.NewPipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctaphid.NewServer(dev, a, ctaphid.Options{Capabilities: ctaphid.CapCBOR}).Serve(ctx)
	}()
	tb.Cleanup(func() { cancel(); <-done; host.Close(); a.Close() })
	c := ctaphid.NewClient(host)
	if err := c.Init(ctx); err != nil {
		tb.Fatal(err)
	}
	return c
}
