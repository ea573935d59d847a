// Package u2fhost is the host (browser) side of U2F over CTAPHID: it
// sends REGISTER and AUTHENTICATE messages (FIDO U2F Raw Message Formats
// v1.2) and polls while the key waits for the user, as browsers do. The
// demo and the tests use it to play the client; it deliberately does not
// share the token's APDU code, so that one side can catch the other's
// mistakes.
package u2fhost

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// U2F instructions (Raw Message Formats v1.2, sections 4 and 5).
const (
	insRegister     byte = 0x01
	insAuthenticate byte = 0x02
)

// AUTHENTICATE control bytes (P1, Raw Message Formats v1.2 section 5.1).
const (
	EnforcePresence     byte = 0x03 // sign, and require the user's touch
	CheckOnly           byte = 0x07 // only ask whether the handle is this key's
	DontEnforcePresence byte = 0x08 // sign without a touch (CTAP 2.1 section 11.2.1)
)

// Status words this package acts on (ISO 7816-4, as U2F uses them).
const (
	SWNoError                uint16 = 0x9000
	SWConditionsNotSatisfied uint16 = 0x6985 // "touch the key"; for CheckOnly, "the handle is mine"
	SWWrongData              uint16 = 0x6a80 // not this key's handle, or made for another app
)

// StatusError is a U2F response with a status word other than 0x9000.
type StatusError struct{ SW uint16 }

func (e *StatusError) Error() string {
	switch e.SW {
	case SWConditionsNotSatisfied:
		return "status word 6985 (conditions not satisfied)"
	case SWWrongData:
		return "status word 6A80 (wrong data: not this key's handle for this app)"
	}
	return fmt.Sprintf("status word %04X", e.SW)
}

// Registration is a parsed U2F_REGISTER response.
type Registration struct {
	PublicKeyRaw   []byte // 65 bytes, the uncompressed P-256 point
	PublicKey      *ecdsa.PublicKey
	KeyHandle      []byte
	CertificateDER []byte // the attestation certificate
	Signature      []byte // ECDSA (DER) by the attestation key
}

// Assertion is a parsed U2F_AUTHENTICATE response.
type Assertion struct {
	UserPresence byte // bit 0 set: the user touched the key
	Counter      uint32
	// FlagsAndCounter are the 5 raw bytes (presence byte, big-endian
	// counter) that the signature covers after the application parameter,
	// and that WebAuthn authenticator data carries after the rpIdHash.
	FlagsAndCounter []byte
	Signature       []byte // ECDSA (DER) by the credential key
}

// PollInterval is how often a request is re-sent while the key answers
// "user presence required" (0x6985). Browsers use about the same.
var PollInterval = 100 * time.Millisecond

// call sends one APDU with CTAPHID_MSG and returns the response data
// without its status word. With poll, a 0x6985 answer means "waiting for
// the touch": U2F keys do not hold the request open, so the host asks
// again until the key says yes or ctx ends.
func call(ctx context.Context, c *ctaphid.Client, apdu []byte, poll bool) ([]byte, error) {
	for {
		rsp, err := c.Call(ctx, ctaphid.CmdMsg, apdu)
		if err != nil {
			return nil, fmt.Errorf("u2f: CTAPHID_MSG: %w", err)
		}
		if len(rsp) < 2 {
			return nil, fmt.Errorf("u2f: %d-byte response has no status word", len(rsp))
		}
		sw := binary.BigEndian.Uint16(rsp[len(rsp)-2:])
		if sw == SWNoError {
			return rsp[:len(rsp)-2], nil
		}
		if sw != SWConditionsNotSatisfied || !poll {
			return nil, &StatusError{SW: sw}
		}
		t := time.NewTimer(PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("u2f: waiting for user presence: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// extendedAPDU encodes CLA 0, INS, P1, P2 0, extended Lc, data and an
// extended Le of 0 (65536 bytes), the way browsers send U2F messages over
// HID (Raw Message Formats v1.2 section 3.1.3, case 4 extended).
func extendedAPDU(ins, p1 byte, data []byte) []byte {
	out := make([]byte, 0, 7+len(data)+2)
	out = append(out, 0, ins, p1, 0, 0, byte(len(data)>>8), byte(len(data)))
	out = append(out, data...)
	return append(out, 0, 0)
}

// Register asks the key to make a credential for app, waiting for the
// user's touch until ctx ends. P1 is 0x03 as Chromium sends it; U2F keys
// ignore it for REGISTER.
func Register(ctx context.Context, c *ctaphid.Client, challenge, app [32]byte) (*Registration, error) {
	data := make([]byte, 0, 64)
	data = append(append(data, challenge[:]...), app[:]...)
	body, err := call(ctx, c, extendedAPDU(insRegister, EnforcePresence, data), true)
	if err != nil {
		return nil, fmt.Errorf("u2f register: %w", err)
	}
	return ParseRegistration(body)
}

// ParseRegistration decodes a REGISTER response body (without its status
// word): 0x05 | public key (65) | L | key handle (L) | certificate (DER) |
// signature. It never panics on malformed input.
func ParseRegistration(b []byte) (*Registration, error) {
	if len(b) < 1+65+1 {
		return nil, fmt.Errorf("u2f: registration response of %d bytes is too short", len(b))
	}
	if b[0] != 0x05 {
		return nil, fmt.Errorf("u2f: registration response starts with %#02x, not the reserved 0x05", b[0])
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b[1:66])
	if err != nil {
		return nil, fmt.Errorf("u2f: registration public key: %w", err)
	}
	r := &Registration{PublicKeyRaw: b[1:66], PublicKey: pub}
	l := int(b[66])
	if l == 0 || len(b) < 67+l {
		return nil, fmt.Errorf("u2f: key handle of %d bytes does not fit the response", l)
	}
	r.KeyHandle = b[67 : 67+l]
	rest := b[67+l:]
	// The certificate has no length prefix: its own DER header says where
	// it ends and the signature begins.
	n, err := derLength(rest)
	if err != nil {
		return nil, fmt.Errorf("u2f: attestation certificate: %w", err)
	}
	if n > len(rest) {
		return nil, fmt.Errorf("u2f: attestation certificate of %d bytes is truncated to %d", n, len(rest))
	}
	r.CertificateDER, r.Signature = rest[:n], rest[n:]
	if len(r.Signature) == 0 {
		return nil, errors.New("u2f: registration response has no signature")
	}
	return r, nil
}

// derLength is the whole encoded length (header included) of the ASN.1
// SEQUENCE at the start of b. Definite lengths only, as DER requires.
func derLength(b []byte) (int, error) {
	if len(b) < 2 || b[0] != 0x30 {
		return 0, errors.New("not a DER SEQUENCE")
	}
	if b[1] < 0x80 {
		return 2 + int(b[1]), nil
	}
	k := int(b[1] & 0x7f)
	// A certificate in a U2F response is under 64 KiB; three length bytes
	// are more than enough and keep the sum far from overflow.
	if k == 0 || k > 3 || len(b) < 2+k {
		return 0, errors.New("bad DER length")
	}
	n := 0
	for _, c := range b[2 : 2+k] {
		n = n<<8 | int(c)
	}
	return 2 + k + n, nil
}

// Authenticate asks the key to sign with keyHandle for app. control is
// EnforcePresence (polls until the user touches the key or ctx ends),
// CheckOnly (answers a *StatusError: 0x6985 if the handle is the key's,
// 0x6A80 if not) or DontEnforcePresence.
func Authenticate(ctx context.Context, c *ctaphid.Client, challenge, app [32]byte, keyHandle []byte, control byte) (*Assertion, error) {
	if len(keyHandle) == 0 || len(keyHandle) > 255 {
		return nil, fmt.Errorf("u2f authenticate: a key handle is 1 to 255 bytes, not %d", len(keyHandle))
	}
	data := make([]byte, 0, 65+len(keyHandle))
	data = append(append(data, challenge[:]...), app[:]...)
	data = append(append(data, byte(len(keyHandle))), keyHandle...)
	body, err := call(ctx, c, extendedAPDU(insAuthenticate, control, data), control == EnforcePresence)
	if err != nil {
		return nil, fmt.Errorf("u2f authenticate: %w", err)
	}
	// Presence byte, counter, and a DER ECDSA signature (at least 8 bytes).
	if len(body) < 5+8 {
		return nil, fmt.Errorf("u2f authenticate: response of %d bytes is too short", len(body))
	}
	return &Assertion{
		UserPresence:    body[0],
		Counter:         binary.BigEndian.Uint32(body[1:5]),
		FlagsAndCounter: body[:5:5],
		Signature:       body[5:],
	}, nil
}
