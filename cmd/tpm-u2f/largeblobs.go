package main

import (
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
func openLargeBlobs(dir string, b tpm.Backend, log *slog.Logger) (*largeblob.Store, error) {
	path := filepath.Join(dir, "largeblobs")
	if b.Volatile {
		path = ""
	}
	s, err := largeblob.Open(path, largeblob.DefaultMaxSize)
	if errors.Is(err, largeblob.ErrDamaged) {
		log.Warn("the large-blob array fails its integrity check; serving the empty array until it is written again", "path", path)
		return s, nil
	}
	return s, err
}
