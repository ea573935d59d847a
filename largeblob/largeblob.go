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
//
// The file is the array behind a 32-byte owner tag naming the identity it
// belongs to (the caller derives it from the TPM identity, which a reset
// replaces). An array of another owner, left by a reset that stopped
// before emptying it or restored from a backup, is emptied when opened:
// a reset empties the array even across a crash.
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
	// ErrOtherOwner: the file held another identity's array; it was
	// emptied.
	ErrOtherOwner = errors.New("largeblob: the stored array belonged to an earlier identity; emptied")
)

// OwnerSize is the length of the owner tag.
const OwnerSize = 32

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
	mu    sync.Mutex
	path  string // "" keeps the array in memory only
	max   int
	owner []byte
	data  []byte
}

// Open reads the array at path (the initial value if there is no file)
// for owner. A file that fails its integrity check yields a Store holding
// the initial value and ErrDamaged: the caller logs it; the file is
// replaced by the next write or reset. A file of another owner is emptied
// now (ErrOtherOwner, with a usable Store). An empty path keeps the array
// in memory.
func Open(path string, max int, owner []byte) (*Store, error) {
	if max < MinMaxSize {
		return nil, fmt.Errorf("largeblob: maximum %d below the spec's %d", max, MinMaxSize)
	}
	if len(owner) != OwnerSize {
		return nil, fmt.Errorf("largeblob: owner tag of %d bytes", len(owner))
	}
	s := &Store{path: path, max: max, owner: bytes.Clone(owner), data: Initial()}
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
	if len(b) < OwnerSize || len(b)-OwnerSize > max || !Valid(b[OwnerSize:]) {
		return s, ErrDamaged
	}
	if !bytes.Equal(b[:OwnerSize], owner) {
		if err := s.Reset(owner); err != nil {
			return nil, err
		}
		return s, ErrOtherOwner
	}
	s.data = b[OwnerSize:]
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
	return s.writeLocked(s.owner, b)
}

func (s *Store) writeLocked(owner, b []byte) error {
	if s.path != "" {
		if err := atomicfile.Write(s.path, append(bytes.Clone(owner), b...)); err != nil {
			return err
		}
	}
	s.owner, s.data = bytes.Clone(owner), bytes.Clone(b)
	return nil
}

// Reset empties the array and gives it to owner, the identity a reset
// made (authenticatorReset).
func (s *Store) Reset(owner []byte) error {
	if len(owner) != OwnerSize {
		return fmt.Errorf("largeblob: owner tag of %d bytes", len(owner))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked(owner, Initial())
}
