package ctap2

import (
	"github.com/fxamacker/cbor/v2"
)

// authenticatorClientPIN subcommands (CTAP 2.1 section 6.5.5).
const (
	PINGetRetries                = 0x01
	PINGetKeyAgreement           = 0x02
	PINSet                       = 0x03
	PINChange                    = 0x04
	PINGetToken                  = 0x05
	PINGetTokenUsingUVWithPerms  = 0x06
	PINGetUVRetries              = 0x07
	PINGetTokenUsingPINWithPerms = 0x09
)

// pinUvAuthToken permissions (section 6.5.5.7).
const (
	PermMakeCredential uint64 = 0x01
	PermGetAssertion   uint64 = 0x02
	PermCredMgmt       uint64 = 0x04
	PermBioEnrollment  uint64 = 0x08
	PermLargeBlobWrite uint64 = 0x10
	PermAuthnrConfig   uint64 = 0x20
	// PermPersistentCredMgmtRO is CTAP 2.2's pcmr: a persistent token for
	// credentialManagement's read-only subcommands.
	PermPersistentCredMgmtRO uint64 = 0x40
)

// COSEKey is a P-256 public key as COSE_Key (RFC 8152): the platform's
// keyAgreement in clientPIN and hmac-secret. (Credential public keys, of
// any algorithm, are encoded by token's credentialPublicKey.)
type COSEKey struct {
	Kty int64  `cbor:"1,keyasint"`
	Alg int64  `cbor:"3,keyasint"`
	Crv int64  `cbor:"-1,keyasint"`
	X   []byte `cbor:"-2,keyasint"`
	Y   []byte `cbor:"-3,keyasint"`
}

// COSE algorithm identifiers.
const (
	// AlgECDHESHKDF256 is what getKeyAgreement's key says it is for
	// (CTAP 2.1 section 6.5.6: -25, although it is neither).
	AlgECDHESHKDF256 = -25
)

// ClientPINRequest is authenticatorClientPIN's parameters (section 6.5.5).
type ClientPINRequest struct {
	PinUvAuthProtocol *uint64  `cbor:"1,keyasint"`
	SubCommand        *uint64  `cbor:"2,keyasint"`
	KeyAgreement      *COSEKey `cbor:"3,keyasint"`
	PinUvAuthParam    []byte   `cbor:"4,keyasint"`
	NewPinEnc         []byte   `cbor:"5,keyasint"`
	PinHashEnc        []byte   `cbor:"6,keyasint"`
	Permissions       *uint64  `cbor:"9,keyasint"`
	RPID              *string  `cbor:"10,keyasint"`
}

// DecodeClientPIN decodes the parameters; which ones a subcommand needs
// is the token's business.
func DecodeClientPIN(b []byte) (*ClientPINRequest, error) {
	var r ClientPINRequest
	if err := decode(b, &r); err != nil {
		return nil, err
	}
	if r.SubCommand == nil {
		return nil, ErrMissingParameter
	}
	return &r, nil
}

// ClientPINResponse is authenticatorClientPIN's response.
type ClientPINResponse struct {
	KeyAgreement    *COSEKey `cbor:"1,keyasint,omitempty"`
	PinUvAuthToken  []byte   `cbor:"2,keyasint,omitempty"`
	PinRetries      *uint64  `cbor:"3,keyasint,omitempty"`
	PowerCycleState *bool    `cbor:"4,keyasint,omitempty"`
	UVRetries       *uint64  `cbor:"5,keyasint,omitempty"`
}

// authenticatorCredentialManagement subcommands (section 6.8).
const (
	CredMgmtGetMetadata         = 0x01
	CredMgmtEnumerateRPsBegin   = 0x02
	CredMgmtEnumerateRPsNext    = 0x03
	CredMgmtEnumerateCredsBegin = 0x04
	CredMgmtEnumerateCredsNext  = 0x05
	CredMgmtDelete              = 0x06
	CredMgmtUpdateUser          = 0x07
)

// CredMgmtRequest is authenticatorCredentialManagement's parameters.
// SubCommandParams stays raw: pinUvAuthParam is a MAC over its bytes.
type CredMgmtRequest struct {
	SubCommand        *uint64         `cbor:"1,keyasint"`
	SubCommandParams  cbor.RawMessage `cbor:"2,keyasint"`
	PinUvAuthProtocol *uint64         `cbor:"3,keyasint"`
	PinUvAuthParam    []byte          `cbor:"4,keyasint"`
}

// CredMgmtParams is the decoded subCommandParams map.
type CredMgmtParams struct {
	RPIDHash     []byte                `cbor:"1,keyasint"`
	CredentialID *CredentialDescriptor `cbor:"2,keyasint"`
	User         *UserEntity           `cbor:"3,keyasint"`
}

// DecodeCredMgmt decodes the request and, when present, its
// subCommandParams (which must be a canonical map too).
func DecodeCredMgmt(b []byte) (*CredMgmtRequest, *CredMgmtParams, error) {
	var r CredMgmtRequest
	if err := decode(b, &r); err != nil {
		return nil, nil, err
	}
	if r.SubCommand == nil {
		return nil, nil, ErrMissingParameter
	}
	var p CredMgmtParams
	if r.SubCommandParams != nil {
		if err := decode(r.SubCommandParams, &p); err != nil {
			return nil, nil, err
		}
	}
	return &r, &p, nil
}

// CredMgmtResponse is authenticatorCredentialManagement's response.
type CredMgmtResponse struct {
	ExistingCount    *uint64               `cbor:"1,keyasint,omitempty"`
	MaxRemaining     *uint64               `cbor:"2,keyasint,omitempty"`
	RP               *RPEntity             `cbor:"3,keyasint,omitempty"`
	RPIDHash         []byte                `cbor:"4,keyasint,omitempty"`
	TotalRPs         *uint64               `cbor:"5,keyasint,omitempty"`
	User             *UserEntity           `cbor:"6,keyasint,omitempty"`
	CredentialID     *CredentialDescriptor `cbor:"7,keyasint,omitempty"`
	PublicKey        cbor.RawMessage       `cbor:"8,keyasint,omitempty"` // a COSE_Key (token's credentialPublicKey)
	TotalCredentials *uint64               `cbor:"9,keyasint,omitempty"`
	CredProtect      *uint64               `cbor:"10,keyasint,omitempty"`
	LargeBlobKey     []byte                `cbor:"11,keyasint,omitempty"`
}
