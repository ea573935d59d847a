package largeblob_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/largeblob"
)

func withHash(data []byte) []byte {
	h := sha256.Sum256(data)
	return append(bytes.Clone(data), h[:16]...)
}

// The initial value is CTAP 2.1 section 6.10.1's: 0x80 and the first 16
// bytes of its SHA-256.
func TestInitialValue(t *testing.T) {
	want := []byte{0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d, 0x3c}
	if got := largeblob.Initial(); !bytes.Equal(got, want) {
		t.Fatalf("initial array %x, want %x", got, want)
	}
	s, err := largeblob.Open(filepath.Join(t.TempDir(), "largeblobs"), largeblob.DefaultMaxSize, ownerA)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Read(0, 1000); !ok || !bytes.Equal(got, want) {
		t.Fatalf("a new store reads %x", got)
	}
}

func TestWriteIsDurablePrivateAndChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "largeblobs")
	s, err := largeblob.Open(path, largeblob.DefaultMaxSize, ownerA)
	if err != nil {
		t.Fatal(err)
	}
	array := withHash([]byte{0x81, 0x43, 1, 2, 3})
	if err := s.Write(array); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v, %v", st, err)
	}
	again, err := largeblob.Open(path, largeblob.DefaultMaxSize, ownerA)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Read(0, 4096); !bytes.Equal(got, array) {
		t.Fatalf("reopened: %x", got)
	}
	if got, ok := again.Read(3, 2); !ok || !bytes.Equal(got, array[3:5]) {
		t.Fatalf("Read(3, 2) = %x", got)
	}
	if got, ok := again.Read(uint64(len(array)), 10); !ok || len(got) != 0 {
		t.Fatal("reading at the end must give nothing")
	}
	if _, ok := again.Read(uint64(len(array))+1, 10); ok {
		t.Fatal("reading past the end accepted")
	}
	// A wrong check, or too much, is refused and leaves the array as it was.
	bad := bytes.Clone(array)
	bad[len(bad)-1] ^= 1
	if err := s.Write(bad); !errors.Is(err, largeblob.ErrIntegrity) {
		t.Fatalf("bad hash: %v", err)
	}
	if err := s.Write(withHash(make([]byte, largeblob.DefaultMaxSize))); !errors.Is(err, largeblob.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if got, _ := s.Read(0, 4096); !bytes.Equal(got, array) {
		t.Fatal("a refused write changed the array")
	}
	// A damaged file is never served.
	if err := os.WriteFile(path, append(bytes.Clone(ownerA), bad...), 0o600); err != nil {
		t.Fatal(err)
	}
	damaged, err := largeblob.Open(path, largeblob.DefaultMaxSize, ownerA)
	if !errors.Is(err, largeblob.ErrDamaged) {
		t.Fatalf("damaged file: %v", err)
	}
	if got, _ := damaged.Read(0, 4096); !bytes.Equal(got, largeblob.Initial()) {
		t.Fatal("a damaged file's array was served")
	}
	if err := s.Reset(ownerB); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, append(bytes.Clone(ownerB), largeblob.Initial()...)) {
		t.Fatalf("after reset the file holds %x", b)
	}
}

// An array of another owner (a reset stopped before emptying it, or a
// file restored from before a reset) is emptied when opened.
func TestOtherOwnersArrayEmptied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "largeblobs")
	s, err := largeblob.Open(path, largeblob.DefaultMaxSize, ownerA)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(withHash([]byte{0x81, 0x41, 9})); err != nil {
		t.Fatal(err)
	}
	other, err := largeblob.Open(path, largeblob.DefaultMaxSize, ownerB)
	if !errors.Is(err, largeblob.ErrOtherOwner) {
		t.Fatalf("another owner's file: %v", err)
	}
	if got, _ := other.Read(0, 4096); !bytes.Equal(got, largeblob.Initial()) {
		t.Fatalf("another owner's array served: %x", got)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, append(bytes.Clone(ownerB), largeblob.Initial()...)) {
		t.Fatalf("the file was not emptied: %x", b)
	}
}

var (
	ownerA = bytes.Repeat([]byte{0xa}, largeblob.OwnerSize)
	ownerB = bytes.Repeat([]byte{0xb}, largeblob.OwnerSize)
)
