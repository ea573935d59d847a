// Package largeblob keeps the serialized large-blob array of
// authenticatorLargeBlobs (CTAP 2.1 section 6.10): one file in the state
// directory, written whole through internal/atomicfile (0600, fsynced,
// renamed into place), so a crash leaves the old array or the new one.
//
// The array is opaque here, as the spec wants it: the platform encrypts
// each entry under a credential's largeBlobKey. What the authenticator
// checks is the array's integrity, its trailing LEFT(SHA-256(array), 16):
// a write is committed only when that verifies, and a file whose check
// fails is never served (the initial value is, and the caller is told).
package largeblob

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/tpm-u2f/tpm-u2f/internal/atomicfile"
)

// MinMaxSize is the least maxSerializedLargeBlobArray the spec allows
// (section 6.4: at least 1024); the daemon offers DefaultMaxSize.
const MinMaxSize = 1024

// DefaultMaxSize is the daemon's maxSerializedLargeBlobArray. 4096 stays
// below one fragment (maxMsgSize 7609 - 64), so python-fido2 0.9, which
// sends "length" with every fragment, writes it in one piece.
const DefaultMaxSize = 4096

// hashLen is the length of the array's integrity check (section 6.10.1).
const hashLen = 16

var (
	// ErrDamaged: the file's trailing hash does not match its array.
	ErrDamaged = errors.New("largeblob: stored array fails its integrity check")
	// ErrIntegrity: a complete write whose trailing hash does not match.
	ErrIntegrity = errors.New("largeblob: array fails its integrity check")
	// ErrTooLarge: more than the store's maximum.
	ErrTooLarge = errors.New("largeblob: array larger than the maximum")
)

// Initial is the array an authenticator starts with, and returns to at
// reset: the empty CBOR array 0x80 and LEFT(SHA-256(0x80), 16).
func Initial() []byte {
	h := sha256.Sum256([]byte{0x80})
	return append([]byte{0x80}, h[:hashLen]...)
}

// Valid reports whether b is an array followed by its integrity check.
func Valid(b []byte) bool {
	if len(b) < hashLen+1 {
		return false
	}
	data, check := b[:len(b)-hashLen], b[len(b)-hashLen:]
	h := sha256.Sum256(data)
	return bytes.Equal(h[:hashLen], check)
}

// Store is the large-blob array of one installation. Safe for concurrent
// use.
type Store struct {
	mu   sync.Mutex
	path string // "" keeps the array in memory only
	max  int
	data []byte
}

// Open reads the array at path (the initial value if there is no file).
// A file that fails its integrity check yields a Store holding the
// initial value and ErrDamaged: the caller logs it; the file is replaced
// by the next write or reset. An empty path keeps the array in memory.
func Open(path string, max int) (*Store, error) {
	if max < MinMaxSize {
		return nil, fmt.Errorf("largeblob: maximum %d below the spec's %d", max, MinMaxSize)
	}
	s := &Store{path: path, max: max, data: Initial()}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) > max || !Valid(b) {
		return s, ErrDamaged
	}
	s.data = b
	return s, nil
}

// MaxSize is maxSerializedLargeBlobArray.
func (s *Store) MaxSize() int { return s.max }

// Read returns up to n bytes of the serialized array from offset, and
// whether offset lies within it (offset == length is allowed and reads
// nothing).
func (s *Store) Read(offset, n uint64) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if offset > uint64(len(s.data)) {
		return nil, false
	}
	end := min(uint64(len(s.data)), offset+min(n, uint64(len(s.data))))
	return bytes.Clone(s.data[offset:end]), true
}

// Write replaces the array with b, a complete serialized array with its
// integrity check, durably before it returns.
func (s *Store) Write(b []byte) error {
	if len(b) > s.max {
		return ErrTooLarge
	}
	if !Valid(b) {
		return ErrIntegrity
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path != "" {
		if err := atomicfile.Write(s.path, b); err != nil {
			return err
		}
	}
	s.data = bytes.Clone(b)
	return nil
}

// Reset empties the array (authenticatorReset).
func (s *Store) Reset() error { return s.Write(Initial()) }
