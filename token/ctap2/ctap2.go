// Package ctap2 owns the CTAP 2.1 message layer (section 6): command and
// status codes, the strict decoding of request parameter maps from CTAP2
// canonical CBOR (section 8), and the encoding of responses. It knows
// nothing of keys or policy; package token answers the commands.
package ctap2

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Command codes (CTAP 2.1 section 6).
const (
	CmdMakeCredential   byte = 0x01
	CmdGetAssertion     byte = 0x02
	CmdGetInfo          byte = 0x04
	CmdClientPIN        byte = 0x06
	CmdReset            byte = 0x07
	CmdGetNextAssertion byte = 0x08
	CmdCredentialMgmt   byte = 0x0a
	// CmdCredentialMgmtPreview is the FIDO_2_1_PRE number of
	// credentialManagement, which libfido2 up to 1.14 (Debian 12's 1.12)
	// sends whatever getInfo says; same parameters, same pinUvAuthParam.
	CmdCredentialMgmtPreview byte = 0x41
	CmdSelection             byte = 0x0b
	CmdLargeBlobs            byte = 0x0c
)

// Status is a CTAP status code (section 8.2); it is an error for every
// value but OK.
type Status byte

const (
	OK                    Status = 0x00
	ErrInvalidCommand     Status = 0x01
	ErrInvalidParameter   Status = 0x02
	ErrInvalidLength      Status = 0x03
	ErrInvalidSeq         Status = 0x04
	ErrCBORUnexpectedType Status = 0x11
	ErrInvalidCBOR        Status = 0x12
	ErrMissingParameter   Status = 0x14
	ErrLimitExceeded      Status = 0x15
	ErrLargeBlobFull      Status = 0x18
	ErrCredentialExcluded Status = 0x19
	ErrInvalidCredential  Status = 0x22
	ErrUnsupportedAlg     Status = 0x26
	ErrOperationDenied    Status = 0x27
	ErrKeyStoreFull       Status = 0x28
	ErrUnsupportedOption  Status = 0x2b
	ErrInvalidOption      Status = 0x2c
	ErrKeepaliveCancel    Status = 0x2d
	ErrNoCredentials      Status = 0x2e
	ErrUserActionTimeout  Status = 0x2f
	ErrNotAllowed         Status = 0x30
	ErrPINInvalid         Status = 0x31
	ErrPINBlocked         Status = 0x32
	ErrPINAuthInvalid     Status = 0x33
	ErrPINAuthBlocked     Status = 0x34
	ErrPINNotSet          Status = 0x35
	ErrPUATRequired       Status = 0x36
	ErrPINPolicyViolation Status = 0x37
	ErrRequestTooLarge    Status = 0x39
	ErrIntegrityFailure   Status = 0x3d
	ErrInvalidSubcommand  Status = 0x3e
	ErrUnauthorizedPerm   Status = 0x40
	ErrOther              Status = 0x7f
)

var statusNames = map[Status]string{
	ErrInvalidCommand: "invalid command", ErrInvalidParameter: "invalid parameter",
	ErrInvalidLength: "invalid length", ErrCBORUnexpectedType: "unexpected CBOR type",
	ErrInvalidCBOR: "invalid CBOR", ErrMissingParameter: "missing parameter",
	ErrLimitExceeded: "limit exceeded", ErrCredentialExcluded: "credential excluded",
	ErrInvalidCredential: "invalid credential", ErrUnsupportedAlg: "unsupported algorithm",
	ErrOperationDenied: "operation denied", ErrKeyStoreFull: "key store full",
	ErrUnsupportedOption: "unsupported option", ErrInvalidOption: "invalid option",
	ErrKeepaliveCancel: "cancelled", ErrNoCredentials: "no credentials",
	ErrUserActionTimeout: "user action timeout", ErrNotAllowed: "not allowed",
	ErrPINInvalid: "PIN invalid", ErrPINBlocked: "PIN blocked",
	ErrPINAuthInvalid: "PIN auth invalid", ErrPINAuthBlocked: "PIN auth blocked (power cycle the key)",
	ErrPUATRequired: "pinUvAuthToken required", ErrPINPolicyViolation: "PIN policy violation",
	ErrUnauthorizedPerm: "unauthorized permission", ErrInvalidSubcommand: "invalid subcommand",
	ErrPINNotSet: "PIN not set", ErrRequestTooLarge: "request too large", ErrOther: "other error",
	ErrInvalidSeq: "invalid sequence", ErrLargeBlobFull: "large blob storage full",
	ErrIntegrityFailure: "integrity failure",
}

func (s Status) Error() string {
	if n, ok := statusNames[s]; ok {
		return "ctap2: " + n
	}
	return fmt.Sprintf("ctap2: status 0x%02x", byte(s))
}

// StatusOf maps an error to the status a client gets: a Status is itself,
// anything else is ErrOther.
func StatusOf(err error) Status {
	var s Status
	if errors.As(err, &s) {
		return s
	}
	return ErrOther
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CTAP2EncOptions().EncMode()
		if err != nil {
			panic(err) // static options
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:        cbor.DupMapKeyEnforcedAPF,
			IndefLength:      cbor.IndefLengthForbidden,
			TagsMd:           cbor.TagsForbidden,
			MaxNestedLevels:  8,
			MaxArrayElements: 64,
			MaxMapPairs:      64,
		}.DecMode()
		if err != nil {
			panic(err) // static options
		}
		return m
	}()
)

// Marshal encodes v in CTAP2 canonical CBOR.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// decode checks that b is one well-formed CTAP2 canonical CBOR map (shortest
// encodings, definite lengths, sorted unique keys, no tags) and decodes it
// into v. Canonical form is checked by decoding and re-encoding: a request
// whose bytes differ from their canonical encoding is ErrInvalidCBOR. A
// value of the wrong type is ErrCBORUnexpectedType. An array or map longer
// than the decoder takes (64) is ErrLimitExceeded, like a credential list
// longer than MaxCredentialCountInList.
func decode(b []byte, v any) error {
	var generic any
	rest, err := decMode.UnmarshalFirst(b, &generic)
	var arrayErr *cbor.MaxArrayElementsError
	var mapErr *cbor.MaxMapPairsError
	if errors.As(err, &arrayErr) || errors.As(err, &mapErr) {
		return ErrLimitExceeded
	}
	if err != nil || len(rest) != 0 {
		return ErrInvalidCBOR
	}
	if _, ok := generic.(map[any]any); !ok {
		return ErrCBORUnexpectedType
	}
	canon, err := encMode.Marshal(generic)
	if err != nil || !bytes.Equal(canon, b) {
		return ErrInvalidCBOR
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		var te *cbor.UnmarshalTypeError
		if errors.As(err, &te) {
			return ErrCBORUnexpectedType
		}
		return ErrInvalidCBOR
	}
	return nil
}
