package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The signature counter.
//
// It must never repeat or go back, across crashes and even when the state
// directory is restored from a backup, so it lives in a TPM NV counter
// index (TPM_NT_COUNTER): the TPM only lets such an index grow, and a
// re-defined one starts at the highest value any counter on the TPM ever
// had. But NV writes wear the chip and are rate-limited (TPM_RC_NV_RATE),
// so we do not write it for every signature. One NV_Increment reserves a
// block of CounterBlock values; signatures take values from the block in
// memory; the next block is reserved when it runs out, and at every start.
// A crash loses at most the rest of a block: the counter jumps forward,
// which relying parties accept, and never repeats. The value handed out is
//
//	(nv - base) * CounterBlock + i,  0 <= i < CounterBlock
//
// where base is the index's value when it was provisioned, so the 32-bit
// U2F counter starts near zero even on a TPM whose counters are old. With
// the default block of 1024 the 32-bit range lasts for four million
// restarts.
type counterState struct {
	next, limit uint64 // next value to hand out, end of the reserved block
}

// ownerNVFirst and ownerNVLast bound the owner NV index range (TCG
// Registry of Reserved TPM 2.0 Handles and Localities, 2.2).
const (
	ownerNVFirst = 0x01800000
	ownerNVLast  = 0x01bfffff
)

var counterAttributes = tpm2.TPMANV{
	NT:        tpm2.TPMNTCounter,
	AuthWrite: true,
	AuthRead:  true,
	NoDA:      true,
}

// provisionCounter defines the counter index the first time an
// installation runs. The index is drawn at random from the owner range
// and checked free, so several users' installations share one TPM.
func (e *Engine) provisionCounter() error {
	if e.id.CounterIndex != 0 {
		_, err := e.readOurNV(e.id.CounterIndex, "signature counter", counterPublic)
		if err == nil {
			return nil
		}
		if !errors.Is(err, tpm2.TPMRCHandle) {
			return err
		}
		// The index is gone (someone undefined it, or this is a fresh
		// simulator). Re-defining it is safe: a new counter starts at the
		// highest value any counter on this TPM has had, so it never goes
		// below what we handed out.
		e.log.Warn("signature counter NV index missing; defining it again", "index", fmt.Sprintf("0x%08x", e.id.CounterIndex))
		return e.defineCounter(e.id.CounterIndex)
	}
	idx, v, err := e.newCounter()
	if err != nil {
		return err
	}
	e.id.CounterIndex, e.id.CounterBase = idx, v
	e.log.Info("signature counter provisioned", "index", fmt.Sprintf("0x%08x", idx))
	return nil
}

// counterPublic is the public area of the counter index at idx, for
// defining it and for checking the TPM's copy before every use.
func counterPublic(idx uint32) (tpm2.TPMSNVPublic, error) {
	return tpm2.TPMSNVPublic{
		NVIndex:    tpm2.TPMHandle(idx),
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: counterAttributes,
		DataSize:   8,
	}, nil
}

// newCounter defines a counter index at a free handle and makes its first
// increment (a counter cannot be read before one); it returns the index
// and its value.
func (e *Engine) newCounter() (uint32, uint64, error) {
	idx, err := e.freeNVIndex()
	if err != nil {
		return 0, 0, err
	}
	if err := e.defineCounter(idx); err != nil {
		return 0, 0, err
	}
	v, err := e.incrementCounter(idx)
	return idx, v, err
}

func (e *Engine) defineCounter(idx uint32) error {
	pub, err := counterPublic(idx)
	if err != nil {
		return err
	}
	return e.defineNV(pub)
}

// defineNV defines an owner index of ours with an empty authValue (the
// counters, the settings, the UV retries; the PIN index has its own).
func (e *Engine) defineNV(pub tpm2.TPMSNVPublic) error {
	return e.do("NV_DefineSpace", func() error {
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(pub),
		}.Execute(e.t)
		return err
	})
}

// ourNVOrDefine returns the Name of the index at idx after checking it is
// the one template defines, and defines it first when the TPM has none.
// A foreign index there is ErrNVIndexForeign and is never touched.
func (e *Engine) ourNVOrDefine(idx uint32, what string, template func(uint32) (tpm2.TPMSNVPublic, error)) (tpm2.TPM2BName, error) {
	name, err := e.readOurNV(idx, what, template)
	if !errors.Is(err, tpm2.TPMRCHandle) {
		return name, err
	}
	pub, err := template(idx)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	if err := e.defineNV(pub); err != nil {
		return tpm2.TPM2BName{}, err
	}
	e.log.Info("NV index defined", "what", what, "index", fmt.Sprintf("0x%08x", idx))
	return e.readOurNV(idx, what, template)
}

func (e *Engine) readNVPublic(idx uint32) (tpm2.TPM2BName, error) {
	rsp, err := e.readNVPublicArea(idx)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	return rsp.NVName, nil
}

func (e *Engine) readNVPublicArea(idx uint32) (*tpm2.NVReadPublicResponse, error) {
	var rsp *tpm2.NVReadPublicResponse
	err := e.do("NV_ReadPublic", func() (err error) {
		rsp, err = tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(idx)}.Execute(e.t)
		return err
	})
	return rsp, err
}

// readOurNV reads the public area of an index we defined from template
// (pinPublic, counterPublic) and returns its Name once the TPM's public
// area is exactly the template's and the Name is the one that public area
// has. Only TPMA_NV_WRITTEN may differ (an index is defined unwritten).
// Anything else is ErrNVIndexForeign: the index was undefined and
// something else defined in its place. The Name does not cover the
// authValue, so an identical re-definition with another authValue passes;
// docs/threat-model.md says what that leaves open.
func (e *Engine) readOurNV(idx uint32, what string, template func(uint32) (tpm2.TPMSNVPublic, error)) (tpm2.TPM2BName, error) {
	rsp, err := e.readNVPublicArea(idx)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	want, err := template(idx)
	if err != nil {
		return tpm2.TPM2BName{}, err
	}
	if err := checkNVPublic(rsp, want); err != nil {
		e.log.Error("tpm: NV index is not the one tpm-u2f defined; refusing to use it", "index", fmt.Sprintf("0x%08x", idx), "use", what, "reason", err)
		return tpm2.TPM2BName{}, fmt.Errorf("%w: %s index 0x%08x: %v", ErrNVIndexForeign, what, idx, err)
	}
	return rsp.NVName, nil
}

// checkNVPublic compares the TPM's answer to NV_ReadPublic with the
// public area we define. Neither holds a secret, so the reason is fit
// for a log line and an error.
func checkNVPublic(rsp *tpm2.NVReadPublicResponse, want tpm2.TPMSNVPublic) error {
	got, err := rsp.NVPublic.Contents()
	if err != nil {
		return fmt.Errorf("unparsable public area: %v", err)
	}
	want.Attributes.Written = got.Attributes.Written
	switch {
	case got.NVIndex != want.NVIndex:
		return fmt.Errorf("public area names index 0x%08x", uint32(got.NVIndex))
	case got.Attributes.NT != want.Attributes.NT:
		return fmt.Errorf("type %d, want %d", got.Attributes.NT, want.Attributes.NT)
	case got.NameAlg != want.NameAlg:
		return fmt.Errorf("name algorithm 0x%04x, want 0x%04x", uint16(got.NameAlg), uint16(want.NameAlg))
	case got.DataSize != want.DataSize:
		return fmt.Errorf("data size %d, want %d", got.DataSize, want.DataSize)
	case !bytes.Equal(got.AuthPolicy.Buffer, want.AuthPolicy.Buffer):
		return errors.New("authPolicy differs")
	case !bytes.Equal(tpm2.Marshal(*got), tpm2.Marshal(want)):
		return fmt.Errorf("attributes 0x%08x, want 0x%08x", nvAttributeBits(got.Attributes), nvAttributeBits(want.Attributes))
	}
	name, err := tpm2.NVName(&want)
	if err != nil {
		return err
	}
	if !bytes.Equal(name.Buffer, rsp.NVName.Buffer) {
		return errors.New("the TPM's Name for the index is not its public area's")
	}
	return nil
}

func nvAttributeBits(a tpm2.TPMANV) uint32 {
	b := tpm2.Marshal(a)
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// incrementCounter increments the NV counter and returns its new value.
func (e *Engine) incrementCounter(idx uint32) (uint64, error) {
	name, err := e.readOurNV(idx, "signature counter", counterPublic)
	if err != nil {
		return 0, err
	}
	nv := tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name}
	auth := tpm2.AuthHandle{Handle: nv.Handle, Name: name, Auth: tpm2.PasswordAuth(nil)}
	if err := e.do("NV_Increment", func() error {
		_, err := tpm2.NVIncrement{AuthHandle: auth, NVIndex: nv}.Execute(e.t)
		return err
	}); err != nil {
		return 0, err
	}
	var rsp *tpm2.NVReadResponse
	if err := e.do("NV_Read", func() (err error) {
		rsp, err = tpm2.NVRead{AuthHandle: auth, NVIndex: nv, Size: 8}.Execute(e.t)
		return err
	}); err != nil {
		return 0, err
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("tpm: NV_Read returned %d bytes for the counter", len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// ErrCounterExhausted means the 32-bit signature counter has no values
// left. Relying parties would see it wrap, which looks like a cloned key.
var ErrCounterExhausted = errors.New("tpm: signature counter exhausted")

// NextCounter returns the next signature counter value. It is strictly
// greater than every value returned before, by this process or any earlier
// one on the same TPM and installation.
func (e *Engine) NextCounter() (uint32, error) {
	var v uint64
	err := e.op(func() error {
		if e.counter.next == e.counter.limit {
			nv, err := e.incrementCounter(e.id.CounterIndex)
			if err != nil {
				return err
			}
			if nv <= e.id.CounterBase {
				return fmt.Errorf("tpm: counter index below its base (%d <= %d)", nv, e.id.CounterBase)
			}
			block := uint64(e.opt.CounterBlock)
			e.counter.next = (nv - e.id.CounterBase) * block
			e.counter.limit = e.counter.next + block
		}
		v = e.counter.next
		e.counter.next++
		return nil
	})
	if err != nil {
		return 0, err
	}
	if v > 0xffffffff {
		return 0, ErrCounterExhausted
	}
	return uint32(v), nil
}

// PeekCounter returns the value NextCounter would hand out next, without
// using one and without a TPM command (0 before the first block).
func (e *Engine) PeekCounter() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counter.next
}
