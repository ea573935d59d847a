// Package u2fhost is the host (browser) side of U2F over CTAPHID: it
// sends REGISTER and AUTHENTICATE messages (FIDO U2F Raw Message Formats
// v1.2) and polls while the key waits for the user, as browsers do. The
// demo and the tests use it to play the client.
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

// StatusError is a U2F response with a status word other than 0x9000.
type StatusError struct{ SW uint16 }

func (e *StatusError) Error() string { return fmt.Sprintf("u2f: status word %04X", e.SW) }

// Registration is a parsed U2F_REGISTER response.
type Registration struct {
	PublicKeyRaw   []byte // 65 bytes, uncompressed point
	PublicKey      *ecdsa.PublicKey
	KeyHandle      []byte
	CertificateDER []byte
	Signature      []byte
}

// Assertion is a parsed U2F_AUTHENTICATE response.
type Assertion struct {
	UserPresence byte
	Counter      uint32
	// FlagsAndCounter are the 5 bytes the signature covers after the
	// application parameter.
	FlagsAndCounter []byte
	Signature       []byte
}

// PollInterval is how often a request is re-sent while the key answers
// "user presence required" (0x6985).
var PollInterval = 100 * time.Millisecond

// call sends an APDU, polling on 0x6985 until ctx ends.
func call(ctx context.Context, c *ctaphid.Client, apdu []byte, poll bool) ([]byte, error) {
	for {
		rsp, err := c.Call(ctx, ctaphid.CmdMsg, apdu)
		if err != nil {
			return nil, err
		}
		if len(rsp) < 2 {
			return nil, errors.New("u2f: response without a status word")
		}
		sw := binary.BigEndian.Uint16(rsp[len(rsp)-2:])
		if sw == 0x9000 {
			return rsp[:len(rsp)-2], nil
		}
		if sw != 0x6985 || !poll {
			return nil, &StatusError{SW: sw}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("u2f: waiting for user presence: %w", ctx.Err())
		case <-time.After(PollInterval):
		}
	}
}

// extendedAPDU encodes CLA 0 INS P1 P2 with extended length and Le 65536,
// as browsers send U2F messages.
func extendedAPDU(ins, p1 byte, data []byte) []byte {
	out := []byte{0, ins, p1, 0, 0, byte(len(data) >> 8), byte(len(data))}
	return append(append(out, data...), 0, 0)
}

// Register asks the key to make a credential for app.
func Register(ctx context.Context, c *ctaphid.Client, challenge, app [32]byte) (*Registration, error) {
	body, err := call(ctx, c, extendedAPDU(0x01, 0x03, append(challenge[:], app[:]...)), true)
	if err != nil {
		return nil, err
	}
	return ParseRegistration(body)
}

// ParseRegistration decodes a REGISTER response body (without status).
func ParseRegistration(b []byte) (*Registration, error) {
	if len(b) < 1+65+1 || b[0] != 0x05 {
		return nil, errors.New("u2f: malformed registration response")
	}
	r := &Registration{PublicKeyRaw: b[1:66]}
	x, y := elliptic.Unmarshal(elliptic.P256(), r.PublicKeyRaw)
	if x == nil {
		return nil, errors.New("u2f: registration public key is not a P-256 point")
	}
	r.PublicKey = &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	l := int(b[66])
	if len(b) < 67+l {
		return nil, errors.New("u2f: truncated key handle")
	}
	r.KeyHandle = b[67 : 67+l]
	rest := b[67+l:]
	n, err := derLength(rest)
	if err != nil || n > len(rest) {
		return nil, fmt.Errorf("u2f: attestation certificate: %v", err)
	}
	r.CertificateDER, r.Signature = rest[:n], rest[n:]
	return r, nil
}

// derLength is the encoded length of the ASN.1 SEQUENCE at the start of b.
func derLength(b []byte) (int, error) {
	if len(b) < 2 || b[0] != 0x30 {
		return 0, errors.New("not a DER SEQUENCE")
	}
	if b[1] < 0x80 {
		return 2 + int(b[1]), nil
	}
	k := int(b[1] & 0x7f)
	if k == 0 || k > 3 || len(b) < 2+k {
		return 0, errors.New("bad DER length")
	}
	n := 0
	for _, c := range b[2 : 2+k] {
		n = n<<8 | int(c)
	}
	return 2 + k + n, nil
}

// Authenticate asks the key to sign with keyHandle. control is 0x03
// (enforce presence), 0x07 (check only) or 0x08 (don't enforce).
func Authenticate(ctx context.Context, c *ctaphid.Client, challenge, app [32]byte, keyHandle []byte, control byte) (*Assertion, error) {
	data := append(append(append(challenge[:], app[:]...), byte(len(keyHandle))), keyHandle...)
	body, err := call(ctx, c, extendedAPDU(0x02, control, data), control == 0x03)
	if err != nil {
		return nil, err
	}
	if len(body) < 5+8 {
		return nil, errors.New("u2f: malformed authentication response")
	}
	return &Assertion{
		UserPresence:    body[0],
		Counter:         binary.BigEndian.Uint32(body[1:5]),
		FlagsAndCounter: body[:5],
		Signature:       body[5:],
	}, nil
}
