package tpm

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/google/go-tpm/tpm2"
)

var (
	// ErrForeignCredential means a credential ID was not made by this
	// installation for the relying party it was presented for: malformed,
	// bound to another rpIdHash/appID, made under another storage primary,
	// or altered. It is decided before any signature and without an
	// authorization against the TPM, so no dictionary-attack count moves.
	ErrForeignCredential = errors.New("tpm: credential is not ours for this relying party")

	// ErrClosed is returned after Close.
	ErrClosed = errors.New("tpm: engine closed")

	// errTransport marks a transport failure from our own stream
	// transport (open.go).
	errTransport = errors.New("tpm: transport failed")
)

// CommandError is a TPM command that failed after the retries the engine
// allows. It names the command and the response code, never any parameter.
type CommandError struct {
	Command string
	Err     error
}

func (e *CommandError) Error() string { return fmt.Sprintf("tpm: %s: %v", e.Command, e.Err) }
func (e *CommandError) Unwrap() error { return e.Err }

// fault is how the engine reacts to an error from one TPM command.
type fault int

const (
	faultFatal fault = iota
	// The TPM asks to be asked again (Part 2, 6.6.3 warnings).
	faultRetry
	// The TPM ran out of session or object slots, usually because another
	// program holds them: wait for them to be freed.
	faultWait
	// The session we passed is gone or out of step: flushed by a resource
	// manager, lost in a TPM restart, or a handle reused (seed 000). Never
	// an authorization failure: replace the session and try once more.
	faultSession
	// A handle we hold (the storage primary, a loaded key) is gone: the
	// TPM restarted or a resource manager lost it. Rebuild and redo the
	// whole operation once.
	faultHandle
	// The TPM was reset and wants TPM2_Startup before anything else.
	faultStartup
	// The connection to the TPM failed (swtpm restarted, a socket
	// dropped): no response code at all. Whether the command ran is
	// unknown.
	faultTransport
)

func classify(err error) fault {
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) ||
			errors.Is(err, syscall.ENOENT) || errors.Is(err, errTransport) {
			return faultTransport
		}
		return faultFatal
	}
	switch {
	case errors.Is(rc, tpm2.TPMRCInitialize):
		return faultStartup
	case errors.Is(rc, tpm2.TPMRCRetry), errors.Is(rc, tpm2.TPMRCYielded),
		errors.Is(rc, tpm2.TPMRCTesting), errors.Is(rc, tpm2.TPMRCNVRate),
		errors.Is(rc, tpm2.TPMRCNVUnavailable), errors.Is(rc, tpm2.TPMRCContextGap):
		return faultRetry
	case errors.Is(rc, tpm2.TPMRCSessionMemory), errors.Is(rc, tpm2.TPMRCObjectMemory),
		errors.Is(rc, tpm2.TPMRCSessionHandles), errors.Is(rc, tpm2.TPMRCObjectHandles):
		return faultWait
	}
	// Warnings TPM_RC_REFERENCE_S0..S6 (0x918..0x91E) name a session
	// handle that is not loaded; REFERENCE_H0..H6 (0x910..0x916) an object.
	if code := uint32(rc); code >= 0x918 && code <= 0x91e {
		return faultSession
	} else if code >= 0x910 && code <= 0x916 {
		return faultHandle
	}
	var f1 tpm2.TPMFmt1Error
	if errors.As(err, &f1) {
		if isSession, _ := f1.Session(); isSession {
			// Our credential keys have an empty authValue and NoDA, so a
			// failed HMAC can only mean the session is out of step.
			return faultSession
		}
		if isHandle, _ := f1.Handle(); isHandle && (errors.Is(rc, tpm2.TPMRCHandle) || errors.Is(rc, tpm2.TPMRCValue)) {
			return faultHandle
		}
	}
	return faultFatal
}

// blobRejected reports whether a TPM2_Load failed because of the blob it
// was given (a format-one error naming a parameter: INTEGRITY, SIZE,
// BINDING, ...): the object is not ours. Anything else (TPM_RC_FAILURE, a
// lost connection, a warning) is the TPM's trouble, and must never tell a
// client its credential is unknown.
func blobRejected(err error) bool {
	var f1 tpm2.TPMFmt1Error
	if classify(err) != faultFatal || !errors.As(err, &f1) {
		return false
	}
	isParam, _ := f1.Parameter()
	return isParam
}
