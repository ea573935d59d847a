package tpm

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Identity is what makes one installation of the token distinct on a TPM:
// the seed mixed into its storage primary and the NV index of its
// signature counter. None of it is secret (the keys stay in the TPM), but
// it is kept 0600 like all state. Losing it is a factory reset: every
// credential ID made under the old seed stops loading.
type Identity struct {
	Seed         [32]byte
	CounterIndex uint32
	CounterBase  uint64
}

// NewIdentity draws a fresh seed; the counter is provisioned by New.
func NewIdentity() Identity {
	var id Identity
	rand.Read(id.Seed[:])
	return id
}

func (id Identity) valid() error {
	if id.Seed == ([32]byte{}) {
		return errors.New("tpm: identity has no seed")
	}
	if id.CounterIndex != 0 && (id.CounterIndex < ownerNVFirst || id.CounterIndex > ownerNVLast) {
		return fmt.Errorf("tpm: counter index 0x%08x outside the owner NV range", id.CounterIndex)
	}
	return nil
}

type identityFile struct {
	Version      int    `json:"version"`
	Seed         string `json:"seed"`
	CounterIndex uint32 `json:"counter_nv_index"`
	CounterBase  uint64 `json:"counter_base"`
}

// LoadIdentity reads an identity written by SaveIdentity. A missing file
// is os.ErrNotExist (wrapped).
func LoadIdentity(path string) (Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, err
	}
	var f identityFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Identity{}, fmt.Errorf("tpm: %s: %w", path, err)
	}
	if f.Version != 1 {
		return Identity{}, fmt.Errorf("tpm: %s: unknown version %d", path, f.Version)
	}
	seed, err := hex.DecodeString(f.Seed)
	if err != nil || len(seed) != 32 {
		return Identity{}, fmt.Errorf("tpm: %s: bad seed", path)
	}
	id := Identity{CounterIndex: f.CounterIndex, CounterBase: f.CounterBase}
	copy(id.Seed[:], seed)
	return id, id.valid()
}

// SaveIdentity writes id atomically with mode 0600.
func SaveIdentity(path string, id Identity) error {
	b, err := json.MarshalIndent(identityFile{
		Version: 1, Seed: hex.EncodeToString(id.Seed[:]),
		CounterIndex: id.CounterIndex, CounterBase: id.CounterBase,
	}, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// WriteFileAtomic writes b to path through a 0600 temporary file, fsync and
// rename, so a crash leaves the old file or the new one, never a mix.
func WriteFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
