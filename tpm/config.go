package tpm

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The authenticator's configuration (CTAP 2.1 authenticatorConfig: alwaysUv,
// the minimum PIN length and its RP list, forcePINChange) and the length
// of the current PIN.
//
// It must not be lowered by restoring files: a state directory copied
// before setMinPINLength must not bring the old minimum back, nor one
// copied before toggleAlwaysUv switch it off. So it lives in the TPM, in
// one ordinary NV index of ours (the "settings index"), never in
// identity.json. Its handle is not recorded anywhere either: it is derived
// from the Name of the installation's reset epoch index, which no file can
// change (a different Name is a different epoch index, ErrEpochIndex). An
// older identity.json therefore finds the same settings index and the
// current settings.
//
// A reset must return the settings to the defaults, and must do so at the
// same instant the credentials go. The index's data starts with the epoch
// value it was written under; data written under another epoch than the
// identity's reads as the defaults. The reset's commit point, the epoch's
// NV_Increment (epoch.go), therefore also resets the settings, atomically
// and without a step of its own that a crash could separate from it.
//
// Limit: the index is written with its own (empty) authValue, so a program
// with TPM access as this user can rewrite it; what it keeps out is a copy
// of the files, not someone who can talk to the TPM (who can also use the
// credentials through the daemon's socket).

// MaxMinPINLengthRPIDs is how many RP IDs setMinPINLength's
// minPinLengthRPIDs may name (getInfo's maxRPIDsForSetMinPINLength). Each
// is kept as its SHA-256, which is all the minPinLength extension needs to
// tell whether an RP is on the list; four hashes keep the whole
// configuration in one 141-byte NV index, written in one NV_Write
// (far under the 1024-byte MAX_NV_BUFFER_SIZE of every TPM), and four is
// what trussed's fido-authenticator allows too.
const MaxMinPINLengthRPIDs = 4

// Settings is the configuration the token enforces.
type Settings struct {
	AlwaysUV       bool
	ForcePINChange bool
	// MinPINLength in code points; 0 is the default (CTAP's 4).
	MinPINLength int
	// PINLength is the current PIN's length in code points; 0 when
	// unknown (a PIN set before the settings existed, or from the command
	// line, which sends only the PIN's hash).
	PINLength int
	// MinPINLengthRPIDs are the SHA-256 hashes of the RP IDs that may
	// read the minimum PIN length (the minPinLength extension).
	MinPINLengthRPIDs [][32]byte
}

const (
	settingsVersion  = 1
	settingsDataSize = 13 + 32*MaxMinPINLengthRPIDs

	settingsAlwaysUV       = 0x01
	settingsForcePINChange = 0x02
)

// ErrSettings: the settings index holds data this version cannot read.
var ErrSettings = errors.New("tpm: the settings NV index holds data tpm-u2f cannot read")

var settingsAttributes = tpm2.TPMANV{
	NT:        tpm2.TPMNTOrdinary,
	AuthWrite: true,
	AuthRead:  true,
	NoDA:      true,
}

func settingsPublic(idx uint32) (tpm2.TPMSNVPublic, error) {
	return tpm2.TPMSNVPublic{
		NVIndex:    tpm2.TPMHandle(idx),
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: settingsAttributes,
		DataSize:   settingsDataSize,
	}, nil
}

// settingsIndex is the settings index's handle, derived from the epoch
// index's Name (see above).
func settingsIndex(epochName []byte) uint32 {
	h := sha256.Sum256(append([]byte("tpm-u2f settings index\x00"), epochName...))
	return ownerNVFirst + binary.BigEndian.Uint32(h[:4])%(ownerNVLast-ownerNVFirst+1)
}

// settingsCache is the settings as read from (or written to) the TPM
// under epoch.
type settingsCache struct {
	epoch uint64
	s     Settings
}

func encodeSettings(epoch uint64, s Settings) ([]byte, error) {
	if s.MinPINLength < 0 || s.MinPINLength > 255 || s.PINLength < 0 || s.PINLength > 255 {
		return nil, errors.New("tpm: settings out of range")
	}
	if len(s.MinPINLengthRPIDs) > MaxMinPINLengthRPIDs {
		return nil, fmt.Errorf("tpm: at most %d minPinLength RP IDs", MaxMinPINLengthRPIDs)
	}
	b := make([]byte, settingsDataSize)
	b[0] = settingsVersion
	binary.BigEndian.PutUint64(b[1:9], epoch)
	if s.AlwaysUV {
		b[9] |= settingsAlwaysUV
	}
	if s.ForcePINChange {
		b[9] |= settingsForcePINChange
	}
	b[10] = byte(s.MinPINLength)
	b[11] = byte(s.PINLength)
	b[12] = byte(len(s.MinPINLengthRPIDs))
	for i, h := range s.MinPINLengthRPIDs {
		copy(b[13+32*i:], h[:])
	}
	return b, nil
}

// decodeSettings reads the index's data; data of another epoch is the
// defaults (a reset happened since it was written).
func decodeSettings(b []byte, epoch uint64) (Settings, error) {
	if len(b) != settingsDataSize || b[0] != settingsVersion || b[9]&^(settingsAlwaysUV|settingsForcePINChange) != 0 || int(b[12]) > MaxMinPINLengthRPIDs {
		return Settings{}, ErrSettings
	}
	if binary.BigEndian.Uint64(b[1:9]) != epoch {
		return Settings{}, nil
	}
	s := Settings{
		AlwaysUV:       b[9]&settingsAlwaysUV != 0,
		ForcePINChange: b[9]&settingsForcePINChange != 0,
		MinPINLength:   int(b[10]),
		PINLength:      int(b[11]),
	}
	for i := range int(b[12]) {
		var h [32]byte
		copy(h[:], b[13+32*i:])
		s.MinPINLengthRPIDs = append(s.MinPINLengthRPIDs, h)
	}
	return s, nil
}

// Settings returns the configuration. It is read from the TPM once (at
// start, or at the first call after a TPM restart); a reset makes it the
// defaults without a TPM command.
func (e *Engine) Settings() (Settings, error) {
	var s Settings
	err := e.op(func() (err error) {
		s, err = e.settings()
		return err
	})
	return s, err
}

// settings is Settings with e.mu held.
func (e *Engine) settings() (Settings, error) {
	if c := e.settingsCache; c != nil && c.epoch == e.id.Epoch {
		return c.s, nil
	}
	if c := e.settingsCache; c != nil && c.epoch < e.id.Epoch {
		// A reset since: whatever the index holds is of an older epoch.
		e.settingsCache = &settingsCache{epoch: e.id.Epoch}
		return Settings{}, nil
	}
	idx := settingsIndex(e.id.EpochName)
	name, err := e.readOurNV(idx, "settings", settingsPublic)
	if errors.Is(err, tpm2.TPMRCHandle) {
		e.settingsCache = &settingsCache{epoch: e.id.Epoch}
		return Settings{}, nil
	}
	if err != nil {
		return Settings{}, err
	}
	var rsp *tpm2.NVReadResponse
	err = e.do("NV_Read", func() (err error) {
		rsp, err = tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Name: name, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
			Size:       settingsDataSize,
		}.Execute(e.t)
		return err
	})
	if errors.Is(err, tpm2.TPMRCNVUninitialized) {
		// Defined, never written: a crash between the two.
		e.settingsCache = &settingsCache{epoch: e.id.Epoch}
		return Settings{}, nil
	}
	if err != nil {
		return Settings{}, err
	}
	s, err := decodeSettings(rsp.Data.Buffer, e.id.Epoch)
	if err != nil {
		e.log.Error("settings NV index unreadable", "index", fmt.Sprintf("0x%08x", idx))
		return Settings{}, err
	}
	e.settingsCache = &settingsCache{epoch: e.id.Epoch, s: s}
	return s, nil
}

// SetSettings writes the configuration to the TPM (defining the settings
// index the first time) and returns once the TPM has it. On failure the
// settings stay what they were.
func (e *Engine) SetSettings(s Settings) error {
	return e.op(func() error {
		data, err := encodeSettings(e.id.Epoch, s)
		if err != nil {
			return err
		}
		idx := settingsIndex(e.id.EpochName)
		name, err := e.ourNVOrDefine(idx, "settings", settingsPublic)
		if err != nil {
			return err
		}
		if err := e.do("NV_Write", func() error {
			_, err := tpm2.NVWrite{
				AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Name: name, Auth: tpm2.PasswordAuth(nil)},
				NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
				Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data},
			}.Execute(e.t)
			return err
		}); err != nil {
			e.settingsCache = nil // read again: the write may have happened
			return err
		}
		e.settingsCache = &settingsCache{epoch: e.id.Epoch, s: cloneSettings(s)}
		return nil
	})
}

func cloneSettings(s Settings) Settings {
	s.MinPINLengthRPIDs = append([][32]byte(nil), s.MinPINLengthRPIDs...)
	return s
}
