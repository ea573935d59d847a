package ctap2

import "github.com/fxamacker/cbor/v2"

// CmdConfig is authenticatorConfig (CTAP 2.1 section 6.11).
const CmdConfig byte = 0x0d

// authenticatorConfig subcommands (section 6.11).
const (
	ConfigEnableEnterpriseAttestation = 0x01
	ConfigToggleAlwaysUV              = 0x02
	ConfigSetMinPINLength             = 0x03
	ConfigVendorPrototype             = 0xff
)

// ConfigRequest is authenticatorConfig's parameters. SubCommandParams
// stays raw: pinUvAuthParam is a MAC over its bytes.
type ConfigRequest struct {
	SubCommand        *uint64         `cbor:"1,keyasint"`
	SubCommandParams  cbor.RawMessage `cbor:"2,keyasint"`
	PinUvAuthProtocol *uint64         `cbor:"3,keyasint"`
	PinUvAuthParam    []byte          `cbor:"4,keyasint"`
}

// ConfigParams is setMinPINLength's subCommandParams (section 6.11.4).
type ConfigParams struct {
	NewMinPINLength   *uint64  `cbor:"1,keyasint"`
	MinPINLengthRPIDs []string `cbor:"2,keyasint"`
	ForceChangePIN    *bool    `cbor:"3,keyasint"`
}

// DecodeConfig decodes the request and, when present, its
// subCommandParams (a canonical map too). An RP ID list longer than the
// decoder takes is ErrLimitExceeded, like any other list.
func DecodeConfig(b []byte) (*ConfigRequest, *ConfigParams, error) {
	var r ConfigRequest
	if err := decode(b, &r); err != nil {
		return nil, nil, err
	}
	if r.SubCommand == nil {
		return nil, nil, ErrMissingParameter
	}
	var p ConfigParams
	if r.SubCommandParams != nil {
		if err := decode(r.SubCommandParams, &p); err != nil {
			return nil, nil, err
		}
		for _, id := range p.MinPINLengthRPIDs {
			if id == "" {
				return nil, nil, ErrInvalidParameter
			}
		}
	}
	return &r, &p, nil
}
