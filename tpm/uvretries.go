package tpm

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Built-in user verification's retries (CTAP 2.1 section 6.5.5.7.3,
// getUVRetries; section 7.2, the uvRetries counter).
//
// A fingerprint that does not match spends one of UVRetries attempts; at
// none left, built-in UV is blocked until the right PIN is entered or the
// token is reset. The count must survive what the PIN's does — a crash, a
// restart, a re-plug, a state directory restored from a backup — so it
// lives in the TPM, in a small ordinary NV index of ours holding the
// number of attempts spent since the last success (4 bytes, big-endian).
//
// The index's handle is derived from the identity's seed (uvIndex), not
// recorded in identity.json: an identity.json restored from before the
// index existed would otherwise name none, and a fresh index would start
// at 0. Every identity with this seed finds the same index, whatever
// file it was restored from; a reset draws a new seed and so a new index
// (and removes the old one, finishReset).
//
// An attempt is written as spent BEFORE the reader is asked
// (SpendUVAttempt) and refunded only when the reader could not verify at
// all or the request was cancelled (RefundUVAttempt). A process killed
// between the two leaves the attempt spent (TestUVAttemptSpentBeforeAnswer).
//
// Limit of this design: fprintd's "match" is no secret, so the index is
// written with an empty authValue, and a process of the same user that
// can talk to the TPM can write it back to 0 — the daemon it could stop
// and replace anyway. What the index stops is the attack the limit is
// for: trying fingers (or fakes) at the reader, across restarts and
// restores. The index is not TPMA_NV_ORDERLY: an orderly index reaches
// NV only at an orderly shutdown, and a pulled plug would give the
// attempts back.

// UVRetries is the number of consecutive non-matching fingers before
// built-in UV is blocked. CTAP 2.1 allows up to 25 (maxUvAttemptsFor-
// InternalRetries); 5 is what users know from their laptops: Windows
// Hello locks fingerprint sign-in after 5 failures and asks for the PIN,
// and fprintd's PAM module (pam_fprintd max-tries) and macOS Touch ID
// (5 tries, then the password) do the same.
const UVRetries = 5

// ErrUVBlocked: UVRetries attempts were spent without a match.
var ErrUVBlocked = errors.New("tpm: built-in user verification blocked")

var uvAttributes = tpm2.TPMANV{
	NT:        tpm2.TPMNTOrdinary,
	AuthWrite: true,
	AuthRead:  true,
	NoDA:      true,
}

// uvIndex is the NV index of the UV retry count for the identity with
// this seed.
func uvIndex(seed [32]byte) uint32 {
	h := sha256.Sum256(append([]byte("tpm-u2f uv retries\x00"), seed[:]...))
	return ownerNVFirst + binary.BigEndian.Uint32(h[:4])%(ownerNVLast-ownerNVFirst+1)
}

// uvPublic is the public area of the UV retry index at idx, for defining
// it and for checking the TPM's copy before every use (readOurNV).
func uvPublic(idx uint32) (tpm2.TPMSNVPublic, error) {
	return tpm2.TPMSNVPublic{
		NVIndex:    tpm2.TPMHandle(idx),
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: uvAttributes,
		DataSize:   4,
	}, nil
}

// uvNV returns the UV index of this identity, checked to be ours, and
// defines it (0 attempts spent) when the TPM has none. An index that is
// not ours (ErrNVIndexForeign) is never written: the token counts that as
// blocked, and only a reset (a new seed, so a new index) gets out of it.
// Called with e.mu held.
func (e *Engine) uvNV() (tpm2.NamedHandle, error) {
	idx := uvIndex(e.id.Seed)
	name, err := e.ourNVOrDefine(idx, "UV retries", uvPublic)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	return tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name}, nil
}

// uvSpent reads the attempts spent. An index defined but never written
// (a crash right after NV_DefineSpace) has spent none.
func (e *Engine) uvSpent(nv tpm2.NamedHandle) (uint32, error) {
	var rsp *tpm2.NVReadResponse
	err := e.do("NV_Read", func() (err error) {
		rsp, err = tpm2.NVRead{AuthHandle: tpm2.AuthHandle{Handle: nv.Handle, Name: nv.Name, Auth: tpm2.PasswordAuth(nil)}, NVIndex: nv, Size: 4}.Execute(e.t)
		return err
	})
	var ce *CommandError
	if errors.As(err, &ce) && errors.Is(ce.Err, tpm2.TPMRCNVUninitialized) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(rsp.Data.Buffer) != 4 {
		return 0, fmt.Errorf("tpm: NV_Read returned %d bytes for the UV retries", len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint32(rsp.Data.Buffer), nil
}

// writeUVSpent writes the attempts spent. The first write sets
// TPMA_NV_WRITTEN, which changes the index's Name: it is read again.
func (e *Engine) writeUVSpent(nv tpm2.NamedHandle, spent uint32) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], spent)
	if name, err := e.readOurNV(uint32(nv.Handle), "UV retries", uvPublic); err != nil {
		return err
	} else {
		nv.Name = name
	}
	return e.do("NV_Write", func() error {
		_, err := tpm2.NVWrite{
			AuthHandle: tpm2.AuthHandle{Handle: nv.Handle, Name: nv.Name, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    nv,
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: b[:]},
		}.Execute(e.t)
		return err
	})
}

// UVRetries reports the UV attempts left (getUVRetries).
func (e *Engine) UVRetries() (int, error) {
	var left int
	err := e.op(func() error {
		nv, err := e.uvNV()
		if err != nil {
			return err
		}
		spent, err := e.uvSpent(nv)
		if err != nil {
			return err
		}
		left = max(0, UVRetries-int(spent))
		return nil
	})
	return left, err
}

// SpendUVAttempt counts one attempt as spent before the reader is asked,
// and returns the attempts left after it. With none left it is
// ErrUVBlocked and spends nothing. It runs once even when the connection
// to the TPM failed (opOnce): the write may have happened.
func (e *Engine) SpendUVAttempt() (left int, err error) {
	err = e.opOnce(func() error {
		return e.changeUVSpent(func(spent uint32) (uint32, error) {
			if spent >= UVRetries {
				return spent, ErrUVBlocked
			}
			left = UVRetries - int(spent+1)
			return spent + 1, nil
		})
	})
	return left, err
}

// RefundUVAttempt gives back the attempt SpendUVAttempt took when no
// finger was judged: the reader was unavailable, or the request was
// cancelled or timed out.
func (e *Engine) RefundUVAttempt() error {
	return e.opOnce(func() error {
		return e.changeUVSpent(func(spent uint32) (uint32, error) {
			return spent - min(spent, 1), nil
		})
	})
}

// ResetUVRetries sets the attempts spent to 0: after a matching finger,
// and after the right PIN (CTAP 2.1 section 6.5.5.7.1 and .2: a
// successful PIN entry resets the uvRetries counter).
func (e *Engine) ResetUVRetries() error {
	return e.op(func() error {
		return e.changeUVSpent(func(uint32) (uint32, error) { return 0, nil })
	})
}

// changeUVSpent reads the attempts spent and writes next's count when it
// differs, sparing the TPM's NV a write that changes nothing. Called
// inside op or opOnce.
func (e *Engine) changeUVSpent(next func(spent uint32) (uint32, error)) error {
	nv, err := e.uvNV()
	if err != nil {
		return err
	}
	spent, err := e.uvSpent(nv)
	if err != nil {
		return err
	}
	n, err := next(spent)
	if err != nil || n == spent {
		return err
	}
	return e.writeUVSpent(nv, n)
}

// dropUVIndex removes the UV retry index of the identity with seed, once
// it is known to be ours (a reset: that identity is gone). An index that
// is missing or not ours is left alone. Called with e.mu held.
func (e *Engine) dropUVIndex(seed [32]byte) error {
	idx := uvIndex(seed)
	name, err := e.readOurNV(idx, "UV retries", uvPublic)
	if errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, ErrNVIndexForeign) {
		return nil
	}
	if err != nil {
		return err
	}
	err = e.do("NV_UndefineSpace", func() error {
		_, err := tpm2.NVUndefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
		}.Execute(e.t)
		return err
	})
	var ce *CommandError
	if errors.As(err, &ce) && errors.Is(ce.Err, tpm2.TPMRCHandle) {
		return nil
	}
	return err
}
