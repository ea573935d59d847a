package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/largeblob"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// TestResetEmptiesTheLargeBlobArray: after authenticatorReset the
// "largeblobs" file (0600) serves the initial, empty array: at once when
// the reset completes, and at the next start when it stopped right after
// its commit point, before the array was emptied.
func TestResetEmptiesTheLargeBlobArray(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := tpm.Backend{Spec: "sim", Bare: true}
	for _, stop := range []string{"identity", ""} {
		t.Run("after-"+stop, func(t *testing.T) {
			sim := tpmtest.Simulator(t)
			dir := t.TempDir()
			persist := func(id tpm.Identity) error { return tpm.SaveIdentity(filepath.Join(dir, "identity.json"), id) }
			start := func() (*tpm.Engine, tpm.Identity) {
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
				return e, id
			}
			e, id := start()
			creds, err := openCredentials(dir, b, e, log)
			if err != nil {
				t.Fatal(err)
			}
			blobs, err := openLargeBlobs(dir, b, id, log)
			if err != nil {
				t.Fatal(err)
			}
			data := []byte{0x81, 0x43, 1, 2, 3}
			h := sha256.Sum256(data)
			array := append(data, h[:16]...)
			if err := blobs.Write(array); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "largeblobs")
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("largeblobs file: %v %v", st, err)
			}
			// Restarting without a reset keeps the array.
			if again, err := openLargeBlobs(dir, b, id, log); err != nil {
				t.Fatal(err)
			} else if got, _ := again.Read(0, 4096); !bytes.Equal(got, array) {
				t.Fatalf("after a restart: %x", got)
			}
			resetStep = func(s string) error {
				if s == stop {
					return errCrash
				}
				return nil
			}
			defer func() { resetStep = func(string) error { return nil } }()
			if err := resetAll(dir, b, e, creds, blobs, persist); stop != "" && !errors.Is(err, errCrash) || stop == "" && err != nil {
				t.Fatalf("resetAll: %v", err)
			}
			creds.Close()
			e.Close()
			e, id = start()
			defer e.Close()
			blobs, err = openLargeBlobs(dir, b, id, log)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := blobs.Read(0, 4096); !bytes.Equal(got, largeblob.Initial()) {
				t.Fatalf("after the reset (stopped after %q) the array is %x", stop, got)
			}
		})
	}
}
