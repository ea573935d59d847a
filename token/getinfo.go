package token

import (
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// AAGUID identifies tpm-u2f authenticators (random, fixed for the
// product; the same for every installation, as an AAGUID must be).
var AAGUID = [16]byte{0x7f, 0x3a, 0x52, 0xc4, 0x1e, 0x9b, 0x4d, 0x60, 0xa1, 0x0d, 0x8e, 0x55, 0x24, 0xb9, 0x61, 0x3c}

// info is what getInfo says. Versions, options and extensions grow with
// the implementation: nothing is claimed that is not done.
func (a *Authenticator) info() ctap2.Info {
	info := ctap2.Info{
		Versions:                 []string{"U2F_V2", "FIDO_2_0", "FIDO_2_1"},
		AAGUID:                   AAGUID[:],
		Options:                  map[string]bool{"rk": a.cfg.Resident != nil, "up": true, "plat": false},
		MaxMsgSize:               7609,
		MaxCredentialCountInList: ctap2.MaxCredentialCountInList,
		MaxCredentialIDLength:    maxCredentialIDLength,
		Transports:               []string{"usb"},
		Algorithms:               a.algorithms(),
		FirmwareVersion:          1,
	}
	if a.cfg.Resident != nil {
		info.Extensions = []string{"credProtect"}
		if a.cfg.Secrets != nil {
			info.Extensions = append(info.Extensions, "hmac-secret")
		}
		n := uint64(a.cfg.Resident.Remaining())
		info.RemainingDiscoverable = &n
	}
	if a.cfg.PIN != nil {
		set, err := a.pinSet()
		if err != nil {
			a.log.Error("reading the PIN state", "err", err)
		}
		info.Options["clientPin"] = set
		info.Options["pinUvAuthToken"] = true
		// Non-discoverable credentials need no PIN, as with U2F; a
		// discoverable one does once a PIN is set (section 6.1.2 step 6).
		info.Options["makeCredUvNotRqd"] = true
		info.PinUvAuthProtocols = []uint64{2, 1}
		info.MinPINLength = pin.MinLength
		if a.cfg.Resident != nil {
			info.Options["credMgmt"] = true
		}
	}
	a.uvInfo(&info)
	return info
}

// maxCredentialIDLength is WebAuthn's limit on credential IDs; ours stay
// within it for every algorithm (package tpm's MaxCredentialIDLength).
const maxCredentialIDLength = 1023

// algorithms is getInfo's list: exactly what this TPM can make, in our
// order of preference.
func (a *Authenticator) algorithms() []ctap2.CredentialParameter {
	var out []ctap2.CredentialParameter
	for _, alg := range a.keys.Algorithms() {
		out = append(out, ctap2.CredentialParameter{Type: "public-key", Alg: alg})
	}
	return out
}
