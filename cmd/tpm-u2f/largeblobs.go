package main

import (
	"crypto/sha256"
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/tpm-u2f/tpm-u2f/largeblob"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// openLargeBlobs opens the large-blob array (authenticatorLargeBlobs) in
// the state directory's "largeblobs" file; a volatile TPM keeps it in
// memory, like everything else then. A file that fails its integrity
// check is not served (the empty array is) and is replaced by the next
// write.
//
// The array belongs to the identity (largeBlobOwner): one left by a reset
// that stopped before emptying it, or restored from before a reset, is
// emptied here.
func openLargeBlobs(dir string, b tpm.Backend, id tpm.Identity, log *slog.Logger) (*largeblob.Store, error) {
	path := filepath.Join(dir, "largeblobs")
	if b.Volatile {
		path = ""
	}
	s, err := largeblob.Open(path, largeblob.DefaultMaxSize, largeBlobOwner(id))
	switch {
	case errors.Is(err, largeblob.ErrDamaged):
		log.Warn("the large-blob array fails its integrity check; serving the empty array until it is written again", "path", path)
		return s, nil
	case errors.Is(err, largeblob.ErrOtherOwner):
		log.Warn("the large-blob array belonged to an earlier identity (before a reset); emptied", "path", path)
		return s, nil
	}
	return s, err
}

// largeBlobOwner names an identity in the large-blob file: its storage
// primary's Name, which every reset replaces (tpm/epoch.go).
func largeBlobOwner(id tpm.Identity) []byte {
	h := sha256.Sum256(append([]byte("tpm-u2f largeblobs owner v1"), id.PrimaryName...))
	return h[:]
}
