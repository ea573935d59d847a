package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

var errCrash = errors.New("crashed")

// TestResetKilledBetweenStoreSteps stops authenticatorReset after the TPM
// identity, after the store wipe, and not at all, and starts the daemon's
// state again (identity.json, credentials.key, credentials.db on a bare
// TPM): the store is then empty and every slot free
// (remainingDiscoverableCredentials), never full of entries that no key
// decrypts. (A crash inside the TPM part: tpm.TestResetKilledAtEveryStep.)
// A credentials.db restored from before the reset is pruned at start.
func TestResetKilledBetweenStoreSteps(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := tpm.Backend{Spec: "sim", Bare: true}
	for _, stop := range []string{"identity", "store", ""} {
		t.Run("after-"+stop, func(t *testing.T) {
			sim := tpmtest.Simulator(t)
			dir := t.TempDir()
			persist := func(id tpm.Identity) error { return tpm.SaveIdentity(filepath.Join(dir, "identity.json"), id) }
			start := func() (*tpm.Engine, *credstore.Store) {
				t.Helper()
				id, err := loadIdentity(dir, b, log)
				if err != nil {
					t.Fatal(err)
				}
				e, id, err := tpm.New(sim, id, tpm.Options{Persist: persist, FlushStale: true})
				if err != nil {
					t.Fatal(err)
				}
				if err := persist(id); err != nil {
					t.Fatal(err)
				}
				creds, err := openCredentials(dir, b, e, log)
				if err != nil {
					t.Fatal(err)
				}
				return e, creds
			}
			e, creds := start()
			for _, u := range []string{"alice", "bob"} {
				if err := creds.Put(credstore.Credential{ID: []byte("id-" + u), RPID: "example.org", UserID: []byte(u), Created: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := os.ReadFile(filepath.Join(dir, "credentials.db"))
			resetStep = func(s string) error {
				if s == stop {
					return errCrash
				}
				return nil
			}
			defer func() { resetStep = func(string) error { return nil } }()
			err := resetAll(dir, b, e, creds, nil, persist)
			if stop != "" && !errors.Is(err, errCrash) || stop == "" && err != nil {
				t.Fatalf("resetAll: %v", err)
			}
			creds.Close()
			e.Close()

			e, creds = start()
			all, err := creds.All()
			if len(all) != 0 || err != nil || creds.Remaining() != 256 {
				t.Fatalf("after the reset (stopped after %q): %d entries, %v, %d free", stop, len(all), err, creds.Remaining())
			}
			creds.Close()
			e.Close()

			// The old credentials.db restored alone: pruned at start.
			if err := os.WriteFile(filepath.Join(dir, "credentials.db"), before, 0o600); err != nil {
				t.Fatal(err)
			}
			e, creds = start()
			defer e.Close()
			defer creds.Close()
			if all, err := creds.All(); len(all) != 0 || err != nil || creds.Remaining() != 256 {
				t.Fatalf("restored credentials.db: %d entries, %v, %d free", len(all), err, creds.Remaining())
			}
		})
	}
}
