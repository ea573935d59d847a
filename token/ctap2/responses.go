package ctap2

// Info is authenticatorGetInfo's response (section 6.4).
type Info struct {
	Versions                 []string              `cbor:"1,keyasint"`
	Extensions               []string              `cbor:"2,keyasint,omitempty"`
	AAGUID                   []byte                `cbor:"3,keyasint"`
	Options                  map[string]bool       `cbor:"4,keyasint,omitempty"`
	MaxMsgSize               uint64                `cbor:"5,keyasint,omitempty"`
	PinUvAuthProtocols       []uint64              `cbor:"6,keyasint,omitempty"`
	MaxCredentialCountInList uint64                `cbor:"7,keyasint,omitempty"`
	MaxCredentialIDLength    uint64                `cbor:"8,keyasint,omitempty"`
	Transports               []string              `cbor:"9,keyasint,omitempty"`
	Algorithms               []CredentialParameter `cbor:"10,keyasint,omitempty"`
	ForcePINChange           bool                  `cbor:"12,keyasint,omitempty"`
	MinPINLength             uint64                `cbor:"13,keyasint,omitempty"`
	FirmwareVersion          uint64                `cbor:"14,keyasint,omitempty"`
	RemainingDiscoverable    *uint64               `cbor:"20,keyasint,omitempty"`

	// Built-in user verification (token/uv.go). Field order does not
	// matter: CTAP2 canonical CBOR sorts the keys.
	PreferredPlatformUvAttempts *uint64 `cbor:"17,keyasint,omitempty"`
	UvModality                  *uint64 `cbor:"18,keyasint,omitempty"`
}

// MakeCredentialResponse is authenticatorMakeCredential's response.
type MakeCredentialResponse struct {
	Fmt      string         `cbor:"1,keyasint"`
	AuthData []byte         `cbor:"2,keyasint"`
	AttStmt  map[string]any `cbor:"3,keyasint"`
}

// GetAssertionResponse is authenticatorGetAssertion's response.
type GetAssertionResponse struct {
	Credential          CredentialDescriptor `cbor:"1,keyasint"`
	AuthData            []byte               `cbor:"2,keyasint"`
	Signature           []byte               `cbor:"3,keyasint"`
	User                *UserEntity          `cbor:"4,keyasint,omitempty"`
	NumberOfCredentials uint64               `cbor:"5,keyasint,omitempty"`
}

// Authenticator data flags (WebAuthn section 6.1).
const (
	FlagUP byte = 0x01
	FlagUV byte = 0x04
	FlagAT byte = 0x40
	FlagED byte = 0x80
)
