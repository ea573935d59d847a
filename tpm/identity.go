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
// the seed mixed into its storage primary, the reset epoch it belongs to
// (epoch.go) and the NV indexes of its signature counter and PIN. None of
// it is secret (the keys stay in the TPM), but it is kept 0600 like all
// state. Losing it is a factory reset: every credential ID made under it
// stops loading.
type Identity struct {
	Seed         [32]byte
	CounterIndex uint32
	CounterBase  uint64
	// PINIndex is the live PIN NV index (0: no PIN); PINPending one being
	// made or removed (pinindex.go).
	PINIndex   uint32
	PINPending uint32
	// HMACKey is the hmac-secret key, wrapped by the storage parent
	// (hmacsecret.go); useless without this TPM and seed.
	HMACKey []byte

	// PrimaryName is the storage primary's Name, recorded at first run and
	// compared at every start (ErrPrimaryMismatch).
	PrimaryName []byte
	// EpochIndex is the reset epoch NV counter, EpochName its Name (with
	// TPMA_NV_WRITTEN) and Epoch the value this identity belongs to.
	EpochIndex uint32
	EpochName  []byte
	Epoch      uint64
	// Bound: the storage primary's policy admits it only while the epoch
	// counter holds Epoch, and credentials live under StorageKey, a
	// storage key wrapped by that primary. False only for an identity
	// written by tpm-u2f before epochs (version 1 of identity.json), until
	// its first reset: its credential IDs were made under the plain
	// primary and must keep loading.
	Bound      bool
	StorageKey []byte
	// Pending is a reset written ahead of the epoch increment that commits
	// it (epoch.go).
	Pending *PendingReset
}

// PendingReset is the new identity a reset is about to commit.
type PendingReset struct {
	Seed        [32]byte
	Epoch       uint64 // the epoch value expected after the increment
	PrimaryName []byte // the new primary's Name at that epoch
}

// NewIdentity draws a fresh seed; the epoch, the primary and the counter
// are provisioned by New.
func NewIdentity() Identity {
	id := Identity{Bound: true}
	rand.Read(id.Seed[:])
	return id
}

func (id Identity) valid() error {
	if id.Seed == ([32]byte{}) {
		return errors.New("tpm: identity has no seed")
	}
	for _, idx := range []uint32{id.CounterIndex, id.PINIndex, id.PINPending, id.EpochIndex} {
		if idx != 0 && (idx < ownerNVFirst || idx > ownerNVLast) {
			return fmt.Errorf("tpm: NV index 0x%08x outside the owner NV range", idx)
		}
	}
	if id.EpochIndex != 0 && (len(id.PrimaryName) == 0 || len(id.EpochName) == 0) {
		return errors.New("tpm: identity has a reset epoch but no recorded primary or epoch Name")
	}
	if id.Bound && id.EpochIndex != 0 && len(id.StorageKey) == 0 {
		return errors.New("tpm: identity is bound to its epoch but has no storage key")
	}
	if p := id.Pending; p != nil {
		if id.EpochIndex == 0 || p.Seed == ([32]byte{}) || p.Epoch <= id.Epoch || len(p.PrimaryName) == 0 {
			return errors.New("tpm: identity has a malformed pending reset")
		}
	}
	return nil
}

// identityVersion is written by this code: 2 has the reset epoch and the
// recorded primary Name. Version 1 (no epoch, plain primary) is read and
// migrated at start.
const identityVersion = 2

type identityFile struct {
	Version      int    `json:"version"`
	Seed         string `json:"seed"`
	CounterIndex uint32 `json:"counter_nv_index"`
	CounterBase  uint64 `json:"counter_base"`
	PINIndex     uint32 `json:"pin_nv_index,omitempty"`
	PINPending   uint32 `json:"pin_nv_index_pending,omitempty"`
	HMACKey      string `json:"hmac_secret_key,omitempty"`

	PrimaryName string       `json:"primary_name,omitempty"`
	EpochIndex  uint32       `json:"epoch_nv_index,omitempty"`
	EpochName   string       `json:"epoch_nv_name,omitempty"`
	Epoch       uint64       `json:"epoch,omitempty"`
	Bound       bool         `json:"epoch_bound,omitempty"`
	StorageKey  string       `json:"storage_key,omitempty"`
	Pending     *pendingFile `json:"pending_reset,omitempty"`
}

type pendingFile struct {
	Seed        string `json:"seed"`
	Epoch       uint64 `json:"epoch"`
	PrimaryName string `json:"primary_name"`
}

// LoadIdentity reads an identity written by SaveIdentity (or by a
// version of tpm-u2f before reset epochs). A missing file is
// os.ErrNotExist (wrapped).
func LoadIdentity(path string) (Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, err
	}
	var f identityFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Identity{}, fmt.Errorf("tpm: %s: %w", path, err)
	}
	if f.Version != 1 && f.Version != identityVersion {
		return Identity{}, fmt.Errorf("tpm: %s: unknown version %d", path, f.Version)
	}
	bad := func(what string) (Identity, error) { return Identity{}, fmt.Errorf("tpm: %s: bad %s", path, what) }
	id := Identity{CounterIndex: f.CounterIndex, CounterBase: f.CounterBase, PINIndex: f.PINIndex, PINPending: f.PINPending,
		EpochIndex: f.EpochIndex, Epoch: f.Epoch, Bound: f.Bound}
	if !hex32(f.Seed, &id.Seed) {
		return bad("seed")
	}
	for _, x := range []struct {
		hex  string
		dst  *[]byte
		what string
	}{{f.HMACKey, &id.HMACKey, "hmac-secret key"}, {f.PrimaryName, &id.PrimaryName, "primary name"},
		{f.EpochName, &id.EpochName, "epoch name"}, {f.StorageKey, &id.StorageKey, "storage key"}} {
		if x.hex == "" {
			continue
		}
		if *x.dst, err = hex.DecodeString(x.hex); err != nil {
			return bad(x.what)
		}
	}
	if f.Version == 1 && (id.Bound || id.EpochIndex != 0 || f.Pending != nil) {
		return bad("version 1 file with version 2 fields")
	}
	if p := f.Pending; p != nil {
		id.Pending = &PendingReset{Epoch: p.Epoch}
		if !hex32(p.Seed, &id.Pending.Seed) {
			return bad("pending reset seed")
		}
		if id.Pending.PrimaryName, err = hex.DecodeString(p.PrimaryName); err != nil {
			return bad("pending reset primary name")
		}
	}
	return id, id.valid()
}

func hex32(s string, dst *[32]byte) bool {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return false
	}
	copy(dst[:], b)
	return true
}

// SaveIdentity writes id atomically with mode 0600.
func SaveIdentity(path string, id Identity) error {
	f := identityFile{
		Version: identityVersion, Seed: hex.EncodeToString(id.Seed[:]),
		CounterIndex: id.CounterIndex, CounterBase: id.CounterBase,
		PINIndex: id.PINIndex, PINPending: id.PINPending, HMACKey: hex.EncodeToString(id.HMACKey),
		PrimaryName: hex.EncodeToString(id.PrimaryName), EpochIndex: id.EpochIndex,
		EpochName: hex.EncodeToString(id.EpochName), Epoch: id.Epoch, Bound: id.Bound,
		StorageKey: hex.EncodeToString(id.StorageKey),
	}
	if p := id.Pending; p != nil {
		f.Pending = &pendingFile{Seed: hex.EncodeToString(p.Seed[:]), Epoch: p.Epoch, PrimaryName: hex.EncodeToString(p.PrimaryName)}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'))
}
