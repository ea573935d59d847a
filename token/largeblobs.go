package token

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// LargeBlobStore keeps the serialized large-blob array (package
// largeblob's Store implements it).
type LargeBlobStore interface {
	// Read returns up to n bytes from offset, and false when offset lies
	// past the end.
	Read(offset, n uint64) ([]byte, bool)
	// Write durably replaces the array; it refuses one whose trailing
	// LEFT(SHA-256, 16) does not verify.
	Write(array []byte) error
	// MaxSize is maxSerializedLargeBlobArray.
	MaxSize() int
}

// maxFragmentLength is section 6.10's maxFragmentLength: maxMsgSize - 64.
const maxFragmentLength = maxMsgSize - 64

// largeBlobWrite is the volatile state of a write in fragments (CTAP 2.1
// section 6.10.2: expectedLength, expectedNextOffset and the buffer).
// Nothing reaches the store before the whole array is there and its hash
// verifies.
type largeBlobWrite struct {
	mu       sync.Mutex
	expected uint64
	buf      []byte
	active   bool
}

func (w *largeBlobWrite) clear() {
	w.mu.Lock()
	w.expected, w.buf, w.active = 0, nil, false
	w.mu.Unlock()
}

// largeBlobs implements authenticatorLargeBlobs (CTAP 2.1 section
// 6.10.2). Reads need nothing; writes need, once a PIN is set, a
// pinUvAuthToken with the lbw permission over
// 32×0xff || 0x0c 0x00 || uint32LE(offset) || SHA-256(set).
func (a *Authenticator) largeBlobs(req *ctap2.LargeBlobsRequest) ([]byte, error) {
	if !a.largeBlobsOn() {
		return nil, ctap2.ErrInvalidCommand
	}
	offset := *req.Offset
	if req.Get != nil {
		if req.Length != nil {
			return nil, ctap2.ErrInvalidParameter
		}
		if *req.Get > maxFragmentLength {
			return nil, ctap2.ErrInvalidLength
		}
		b, ok := a.cfg.LargeBlobs.Read(offset, *req.Get)
		if !ok {
			return nil, ctap2.ErrInvalidParameter
		}
		return ctap2.Marshal(ctap2.LargeBlobsResponse{Config: b})
	}
	if len(req.Set) > maxFragmentLength {
		return nil, ctap2.ErrInvalidLength
	}
	w := &a.blobs
	w.mu.Lock()
	defer w.mu.Unlock()
	expected, next := w.expected, uint64(len(w.buf))
	if offset == 0 {
		if req.Length == nil {
			return nil, ctap2.ErrInvalidParameter
		}
		if *req.Length > uint64(a.cfg.LargeBlobs.MaxSize()) {
			return nil, ctap2.ErrLargeBlobFull
		}
		if *req.Length < 17 {
			return nil, ctap2.ErrInvalidParameter
		}
		expected, next = *req.Length, 0
	} else {
		if req.Length != nil {
			return nil, ctap2.ErrInvalidParameter
		}
		if !w.active {
			return nil, ctap2.ErrInvalidSeq
		}
	}
	if offset != next {
		return nil, ctap2.ErrInvalidSeq
	}
	if err := a.checkLargeBlobWrite(req, offset); err != nil {
		return nil, err
	}
	if offset+uint64(len(req.Set)) > expected {
		return nil, ctap2.ErrInvalidParameter
	}
	if offset == 0 {
		w.buf = make([]byte, 0, expected)
	}
	w.expected, w.active = expected, true
	w.buf = append(w.buf, req.Set...)
	if uint64(len(w.buf)) < expected {
		return nil, nil
	}
	array := w.buf
	w.expected, w.buf, w.active = 0, nil, false
	h := sha256.Sum256(array[:len(array)-16])
	if !bytes.Equal(h[:16], array[len(array)-16:]) {
		return nil, ctap2.ErrIntegrityFailure
	}
	if err := a.cfg.LargeBlobs.Write(array); err != nil {
		return nil, err
	}
	a.log.Info("large-blob array written", "bytes", len(array))
	return nil, nil
}

// checkLargeBlobWrite is section 6.10.2's authorization of a set: needed
// once a PIN is set (the authenticator is then "protected by some form of
// user verification"); before, as for makeCredential, anyone may write.
func (a *Authenticator) checkLargeBlobWrite(req *ctap2.LargeBlobsRequest, offset uint64) error {
	set, err := a.pinSet()
	if err != nil {
		return err
	}
	if !set {
		return nil
	}
	if req.PinUvAuthParam == nil {
		return ctap2.ErrPUATRequired
	}
	if req.PinUvAuthProtocol == nil {
		return ctap2.ErrMissingParameter
	}
	msg := bytes.Repeat([]byte{0xff}, 32)
	msg = append(msg, ctap2.CmdLargeBlobs, 0x00)
	if offset > 0xffffffff {
		return ctap2.ErrInvalidParameter
	}
	msg = binary.LittleEndian.AppendUint32(msg, uint32(offset))
	h := sha256.Sum256(req.Set)
	msg = append(msg, h[:]...)
	return a.verifyPinUvAuth(req.PinUvAuthProtocol, req.PinUvAuthParam, msg, ctap2.PermLargeBlobWrite, "")
}
