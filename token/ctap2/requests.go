package ctap2

import "github.com/fxamacker/cbor/v2"

// RPEntity is PublicKeyCredentialRpEntity. Icon is decoded only so that
// a value of the wrong type is CBOR_UNEXPECTED_TYPE, as for every other
// member; the token keeps no icons.
type RPEntity struct {
	ID   string `cbor:"id"`
	Name string `cbor:"name,omitempty"`
	Icon string `cbor:"icon,omitempty"`
}

// UserEntity is PublicKeyCredentialUserEntity (Icon as in RPEntity).
type UserEntity struct {
	ID          []byte `cbor:"id"`
	Name        string `cbor:"name,omitempty"`
	DisplayName string `cbor:"displayName,omitempty"`
	Icon        string `cbor:"icon,omitempty"`
}

// CredentialParameter is PublicKeyCredentialParameters.
type CredentialParameter struct {
	Type string `cbor:"type"`
	Alg  int64  `cbor:"alg"`
}

// CredentialDescriptor is PublicKeyCredentialDescriptor.
type CredentialDescriptor struct {
	Type       string   `cbor:"type"`
	ID         []byte   `cbor:"id"`
	Transports []string `cbor:"transports,omitempty"`
}

// COSE algorithms of credential keys (IANA COSE Algorithms registry).
const (
	AlgES256 = -7   // ECDSA P-256 w/ SHA-256
	AlgES384 = -35  // ECDSA P-384 w/ SHA-384
	AlgES512 = -36  // ECDSA P-521 w/ SHA-512
	AlgRS256 = -257 // RSASSA-PKCS1-v1_5 w/ SHA-256
	AlgPS256 = -37  // RSASSA-PSS w/ SHA-256
)

// MaxCredentialCountInList is getInfo's maxCredentialCountInList: the most
// entries an allowList or excludeList may have. A longer list is
// CTAP2_ERR_LIMIT_EXCEEDED ("limit for number of items exceeded"), as
// Chromium's virtual CTAP2 authenticator answers, and which Chromium reads
// as "none of these credentials is here". Platforms split longer lists
// into batches of this size.
const MaxCredentialCountInList = 8

// clientDataHashSize: clientDataHash is a SHA-256. CTAP 2.1 names no error
// for another length, and neither OpenSK nor trussed's fido-authenticator
// checks it; the value is well-formed CBOR of the right type, so it is a
// bad parameter: CTAP1_ERR_INVALID_PARAMETER.
const clientDataHashSize = 32

// MakeCredentialRequest is authenticatorMakeCredential's parameters
// (section 6.1.1).
type MakeCredentialRequest struct {
	ClientDataHash    []byte                     `cbor:"1,keyasint"`
	RP                *RPEntity                  `cbor:"2,keyasint"`
	User              *UserEntity                `cbor:"3,keyasint"`
	PubKeyCredParams  []CredentialParameter      `cbor:"4,keyasint"`
	ExcludeList       []CredentialDescriptor     `cbor:"5,keyasint"`
	Extensions        map[string]cbor.RawMessage `cbor:"6,keyasint"`
	Options           map[string]bool            `cbor:"7,keyasint"`
	PinUvAuthParam    *[]byte                    `cbor:"8,keyasint"`
	PinUvAuthProtocol *uint64                    `cbor:"9,keyasint"`
	EnterpriseAttest  *uint64                    `cbor:"10,keyasint"`
	// AttestationFormatsPreference (CTAP 2.2 section 6.1.1, 0x0B): the
	// RP's formats, most preferred first.
	AttestationFormatsPreference []string `cbor:"11,keyasint"`
}

// DecodeMakeCredential decodes and checks the parameters every
// authenticator must have.
func DecodeMakeCredential(b []byte) (*MakeCredentialRequest, error) {
	var r MakeCredentialRequest
	if err := decode(b, &r); err != nil {
		return nil, err
	}
	if r.ClientDataHash == nil || r.RP == nil || r.User == nil || r.PubKeyCredParams == nil {
		return nil, ErrMissingParameter
	}
	if r.RP.ID == "" || r.User.ID == nil {
		return nil, ErrMissingParameter
	}
	if len(r.ClientDataHash) != clientDataHashSize {
		return nil, ErrInvalidParameter
	}
	if r.EnterpriseAttest != nil {
		// Section 6.1.2: an authenticator that is not enterprise
		// attestation capable (getInfo has no "ep") answers
		// CTAP1_ERR_INVALID_PARAMETER; so do OpenSK and trussed's.
		return nil, ErrInvalidParameter
	}
	if len(r.ExcludeList) > MaxCredentialCountInList {
		return nil, ErrLimitExceeded
	}
	if len(r.User.ID) > 64 {
		return nil, ErrInvalidLength
	}
	for _, p := range r.PubKeyCredParams {
		if p.Type == "" {
			return nil, ErrMissingParameter
		}
	}
	for _, d := range r.ExcludeList {
		if d.Type == "" || d.ID == nil {
			return nil, ErrMissingParameter
		}
	}
	return &r, nil
}

// LargeBlobsRequest is authenticatorLargeBlobs' parameters (CTAP 2.1
// section 6.10.2).
type LargeBlobsRequest struct {
	Get               *uint64 `cbor:"1,keyasint"`
	Set               []byte  `cbor:"2,keyasint"`
	Offset            *uint64 `cbor:"3,keyasint"`
	Length            *uint64 `cbor:"4,keyasint"`
	PinUvAuthParam    []byte  `cbor:"5,keyasint"`
	PinUvAuthProtocol *uint64 `cbor:"6,keyasint"`
}

// DecodeLargeBlobs decodes and applies section 6.10.2's first checks:
// offset is required, and exactly one of get and set is present.
func DecodeLargeBlobs(b []byte) (*LargeBlobsRequest, error) {
	var r LargeBlobsRequest
	if err := decode(b, &r); err != nil {
		return nil, err
	}
	if r.Offset == nil {
		return nil, ErrInvalidParameter
	}
	if (r.Get == nil) == (r.Set == nil) {
		return nil, ErrInvalidParameter
	}
	return &r, nil
}

// GetAssertionRequest is authenticatorGetAssertion's parameters
// (section 6.2.1).
type GetAssertionRequest struct {
	RPID              string                     `cbor:"1,keyasint"`
	ClientDataHash    []byte                     `cbor:"2,keyasint"`
	AllowList         []CredentialDescriptor     `cbor:"3,keyasint"`
	Extensions        map[string]cbor.RawMessage `cbor:"4,keyasint"`
	Options           map[string]bool            `cbor:"5,keyasint"`
	PinUvAuthParam    *[]byte                    `cbor:"6,keyasint"`
	PinUvAuthProtocol *uint64                    `cbor:"7,keyasint"`
}

// DecodeGetAssertion decodes and checks the required parameters.
func DecodeGetAssertion(b []byte) (*GetAssertionRequest, error) {
	var r GetAssertionRequest
	if err := decode(b, &r); err != nil {
		return nil, err
	}
	if r.RPID == "" || r.ClientDataHash == nil {
		return nil, ErrMissingParameter
	}
	if len(r.ClientDataHash) != clientDataHashSize {
		return nil, ErrInvalidParameter
	}
	if len(r.AllowList) > MaxCredentialCountInList {
		return nil, ErrLimitExceeded
	}
	for _, d := range r.AllowList {
		if d.Type == "" || d.ID == nil {
			return nil, ErrMissingParameter
		}
	}
	return &r, nil
}

// Option reads a boolean option with its default.
func Option(opts map[string]bool, name string, def bool) bool {
	if v, ok := opts[name]; ok {
		return v
	}
	return def
}
