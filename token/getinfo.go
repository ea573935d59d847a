package token

import (
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// AAGUID identifies tpm-u2f authenticators (random, fixed for the
// product; the same for every installation, as an AAGUID must be).
var AAGUID = [16]byte{0x7f, 0x3a, 0x52, 0xc4, 0x1e, 0x9b, 0x4d, 0x60, 0xa1, 0x0d, 0x8e, 0x55, 0x24, 0xb9, 0x61, 0x3c}

// info is what getInfo says. Versions, options and extensions grow with
// the implementation: nothing is claimed that is not done.
func (a *Authenticator) info() ctap2.Info {
	info := ctap2.Info{
		Versions:                 []string{"FIDO_2_0", "FIDO_2_1"},
		AAGUID:                   AAGUID[:],
		Options:                  map[string]bool{"rk": a.cfg.Resident != nil, "up": true, "plat": false},
		MaxMsgSize:               maxMsgSize,
		MaxCredentialCountInList: ctap2.MaxCredentialCountInList,
		MaxCredentialIDLength:    maxCredentialIDLength,
		Transports:               []string{"usb"},
		Algorithms:               a.algorithms(),
		FirmwareVersion:          1,
		AttestationFormats:       attestationFormats,
	}
	// Versions: never FIDO_2_2 (CTAP 2.2's getInfo text: 2.2
	// authenticators report FIDO_2_1). FIDO_2_3 is not listed: the spec's
	// list of what a 2.3 authenticator must do has not been checked item
	// by item here (its text is not at hand), and a version claimed but not
	// met is worse than one not claimed. What is met of 2.2/2.3:
	// hmac-secret-mc, thirdPartyPayment, attestationFormats and
	// attestationFormatsPreference, the persistent read-only credential
	// management token (pcmr) and authenticatorConfigCommands.
	s, err := a.settings()
	if err != nil {
		a.log.Error("reading the settings", "err", err)
	}
	if err == nil && !s.AlwaysUV {
		// U2F cannot verify the user: not offered while alwaysUv is on
		// (nor while the settings cannot be read).
		info.Versions = append([]string{"U2F_V2"}, info.Versions...)
	}
	if a.cfg.Resident != nil {
		// Exactly what is implemented: credProtect (CTAP 2.1 section 12.1),
		// credBlob (12.2), thirdPartyPayment (CTAP 2.2); hmac-secret (12.5)
		// and hmac-secret-mc (CTAP 2.2) with a SecretDeriver; largeBlobKey
		// (12.3) with a large-blob store; minPinLength (12.4) with a PIN.
		info.Extensions = []string{"credProtect", "credBlob"}
		info.MaxCredBlobLength = maxCredBlobLength
		if a.cfg.Secrets != nil {
			info.Extensions = append(info.Extensions, "hmac-secret", "hmac-secret-mc")
		}
		if a.largeBlobsOn() {
			info.Extensions = append(info.Extensions, "largeBlobKey")
			info.Options["largeBlobs"] = true
			info.MaxSerializedLargeBlobArray = uint64(a.cfg.LargeBlobs.MaxSize())
		}
		if a.cfg.PIN != nil {
			info.Extensions = append(info.Extensions, "minPinLength")
		}
		info.Extensions = append(info.Extensions, "thirdPartyPayment")
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
		// alwaysUv makes it false (CTAP 2.1 section 6.4, alwaysUv).
		info.Options["makeCredUvNotRqd"] = !s.AlwaysUV
		info.PinUvAuthProtocols = []uint64{2, 1}
		info.MinPINLength = uint64(minPINLength(s))
		info.ForcePINChange = s.ForcePINChange
		if a.cfg.Settings != nil {
			info.Options["authnrCfg"] = true
			info.Options["alwaysUv"] = s.AlwaysUV
			info.Options["setMinPINLength"] = true
			n := uint64(MaxMinPINLengthRPIDs)
			info.MaxRPIDsForSetMinPINLength = &n
			// CTAP 2.3: the subcommands answered other than with an
			// error for an unsupported feature.
			info.AuthenticatorConfigCommands = []uint64{ctap2.ConfigToggleAlwaysUV, ctap2.ConfigSetMinPINLength}
		}
		if a.cfg.Resident != nil {
			info.Options["credMgmt"] = true
			info.Options["perCredMgmtRO"] = true
		}
	}
	a.uvInfo(&info)
	return info
}

// maxMsgSize is getInfo's maxMsgSize.
const maxMsgSize = 7609

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
