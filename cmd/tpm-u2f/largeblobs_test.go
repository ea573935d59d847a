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

// TestResetEmptiesTheLargeBlobArray: authenticatorReset leaves the
// "largeblobs" file holding the initial (empty) array, also when the reset
// stops right after its commit point, and the file is 0600.
func TestResetEmptiesTheLargeBlobArray(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := tpm.Backend{Spec: "sim", Bare: true}
	for _, stop := range []string{"identity", ""} {
		t.Run("after-"+stop, func(t *testing.T) {
			sim := tpmtest.Simulator(t)
			dir := t.TempDir()
			persist := func(id tpm.Identity) error { return tpm.SaveIdentity(filepath.Join(dir, "identity.json"), id) }
			id, err := loadIdentity(dir, b, log)
			if err != nil {
				t.Fatal(err)
			}
			e, id, err := tpm.New(sim, id, tpm.Options{Persist: persist, FlushStale: true})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if err := persist(id); err != nil {
				t.Fatal(err)
			}
			creds, err := openCredentials(dir, b, e, log)
			if err != nil {
				t.Fatal(err)
			}
			defer creds.Close()
			blobs, err := openLargeBlobs(dir, b, log)
			if err != nil {
				t.Fatal(err)
			}
			data := []byte{0x81, 0x43, 1, 2, 3}
			h := sha256.Sum256(data)
			if err := blobs.Write(append(data, h[:16]...)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "largeblobs")
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("largeblobs file: %v %v", st, err)
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
			if got, _ := os.ReadFile(path); !bytes.Equal(got, largeblob.Initial()) {
				t.Fatalf("after the reset the file holds %x", got)
			}
		})
	}
}
