package ctap2

// Info is authenticatorGetInfo's response (section 6.4).
type Info struct {
	Versions                    []string              `cbor:"1,keyasint"`
	Extensions                  []string              `cbor:"2,keyasint,omitempty"`
	AAGUID                      []byte                `cbor:"3,keyasint"`
	Options                     map[string]bool       `cbor:"4,keyasint,omitempty"`
	MaxMsgSize                  uint64                `cbor:"5,keyasint,omitempty"`
	PinUvAuthProtocols          []uint64              `cbor:"6,keyasint,omitempty"`
	MaxCredentialCountInList    uint64                `cbor:"7,keyasint,omitempty"`
	MaxCredentialIDLength       uint64                `cbor:"8,keyasint,omitempty"`
	Transports                  []string              `cbor:"9,keyasint,omitempty"`
	Algorithms                  []CredentialParameter `cbor:"10,keyasint,omitempty"`
	MaxSerializedLargeBlobArray uint64                `cbor:"11,keyasint,omitempty"`
	ForcePINChange              bool                  `cbor:"12,keyasint,omitempty"`
	MinPINLength                uint64                `cbor:"13,keyasint,omitempty"`
	FirmwareVersion             uint64                `cbor:"14,keyasint,omitempty"`
	MaxCredBlobLength           uint64                `cbor:"15,keyasint,omitempty"`
	// MaxRPIDsForSetMinPINLength is 0x10 (section 6.4).
	MaxRPIDsForSetMinPINLength *uint64  `cbor:"16,keyasint,omitempty"`
	RemainingDiscoverable      *uint64  `cbor:"20,keyasint,omitempty"`
	AttestationFormats         []string `cbor:"22,keyasint,omitempty"`
	// AuthenticatorConfigCommands is CTAP 2.3's 0x1F: the
	// authenticatorConfig subcommands the key implements.
	AuthenticatorConfigCommands []uint64 `cbor:"31,keyasint,omitempty"`

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
	// LargeBlobKey (0x05, CTAP 2.1 section 12.3).
	LargeBlobKey []byte `cbor:"5,keyasint,omitempty"`
}

// LargeBlobsResponse is authenticatorLargeBlobs' answer to a get.
type LargeBlobsResponse struct {
	Config []byte `cbor:"1,keyasint"`
}

// GetAssertionResponse is authenticatorGetAssertion's response.
type GetAssertionResponse struct {
	Credential          CredentialDescriptor `cbor:"1,keyasint"`
	AuthData            []byte               `cbor:"2,keyasint"`
	Signature           []byte               `cbor:"3,keyasint"`
	User                *UserEntity          `cbor:"4,keyasint,omitempty"`
	NumberOfCredentials uint64               `cbor:"5,keyasint,omitempty"`
	LargeBlobKey        []byte               `cbor:"7,keyasint,omitempty"`
}

// Authenticator data flags (WebAuthn section 6.1).
const (
	FlagUP byte = 0x01
	FlagUV byte = 0x04
	FlagAT byte = 0x40
	FlagED byte = 0x80
)
