package tpm

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/tpm-u2f/tpm-u2f/internal/atomicfile"
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
	// PINIndex is the live PIN NV index (0: no PIN); PINPending one being
	// made or removed (pinindex.go).
	PINIndex   uint32
	PINPending uint32
	// HMACKey is the hmac-secret key, wrapped by the storage primary
	// (hmacsecret.go); useless without this TPM and seed.
	HMACKey []byte
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
	for _, idx := range []uint32{id.CounterIndex, id.PINIndex, id.PINPending} {
		if idx != 0 && (idx < ownerNVFirst || idx > ownerNVLast) {
			return fmt.Errorf("tpm: NV index 0x%08x outside the owner NV range", idx)
		}
	}
	return nil
}

type identityFile struct {
	Version      int    `json:"version"`
	Seed         string `json:"seed"`
	CounterIndex uint32 `json:"counter_nv_index"`
	CounterBase  uint64 `json:"counter_base"`
	PINIndex     uint32 `json:"pin_nv_index,omitempty"`
	PINPending   uint32 `json:"pin_nv_index_pending,omitempty"`
	HMACKey      string `json:"hmac_secret_key,omitempty"`
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
	id := Identity{CounterIndex: f.CounterIndex, CounterBase: f.CounterBase, PINIndex: f.PINIndex, PINPending: f.PINPending}
	if f.HMACKey != "" {
		if id.HMACKey, err = hex.DecodeString(f.HMACKey); err != nil {
			return Identity{}, fmt.Errorf("tpm: %s: bad hmac-secret key", path)
		}
	}
	copy(id.Seed[:], seed)
	return id, id.valid()
}

// SaveIdentity writes id atomically with mode 0600.
func SaveIdentity(path string, id Identity) error {
	b, err := json.MarshalIndent(identityFile{
		Version: 1, Seed: hex.EncodeToString(id.Seed[:]),
		CounterIndex: id.CounterIndex, CounterBase: id.CounterBase,
		PINIndex: id.PINIndex, PINPending: id.PINPending, HMACKey: hex.EncodeToString(id.HMACKey),
	}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'))
}
