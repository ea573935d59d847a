package token

import (
	"bytes"
	"crypto/sha256"
	"slices"

	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// SettingsStore keeps authenticatorConfig's settings where a copied or
// restored state directory cannot lower them: package tpm's Engine
// (tpm/config.go), which implements it directly.
type SettingsStore interface {
	Settings() (tpm.Settings, error)
	SetSettings(tpm.Settings) error
}

// MaxMinPINLengthRPIDs is getInfo's maxRPIDsForSetMinPINLength (package
// tpm says why four).
const MaxMinPINLengthRPIDs = tpm.MaxMinPINLengthRPIDs

// MaxMinPINLength: a minimum above the longest PIN (63 bytes, so at most
// 63 code points) could never be met.
const MaxMinPINLength = pin.MaxBytes

// settings returns the configuration; without a store, the defaults.
func (a *Authenticator) settings() (tpm.Settings, error) {
	if a.cfg.Settings == nil {
		return tpm.Settings{}, nil
	}
	return a.cfg.Settings.Settings()
}

// minPINLength is the minimum in force: CTAP's 4, or more once
// setMinPINLength raised it.
func minPINLength(s tpm.Settings) int { return max(pin.MinLength, s.MinPINLength) }

// Settings reports the configuration (for `tpm-u2f config`).
func (a *Authenticator) Settings() (tpm.Settings, error) { return a.settings() }

// authenticatorConfig implements authenticatorConfig (CTAP 2.1 section
// 6.11). With a PIN set, or with alwaysUv on (for every subcommand but
// toggleAlwaysUv, so that a key without a PIN can switch it off again),
// the request needs a pinUvAuthToken with the acfg permission, MACed over
// 32×0xff || 0x0d || subCommand || subCommandParams (section 6.11 step
// 4; python-fido2's Config._call and libfido2's config.c build the same
// bytes). Without either, the spec lets any platform raise the minimum or
// switch alwaysUv on, which only makes the key stricter. OpenSK's
// process_config orders the checks the same way.
func (a *Authenticator) authenticatorConfig(req *ctap2.ConfigRequest, params *ctap2.ConfigParams) ([]byte, error) {
	if a.cfg.Settings == nil || a.cfg.PIN == nil {
		return nil, ctap2.ErrInvalidCommand
	}
	sub := *req.SubCommand
	switch sub {
	case ctap2.ConfigEnableEnterpriseAttestation, ctap2.ConfigToggleAlwaysUV, ctap2.ConfigSetMinPINLength, ctap2.ConfigVendorPrototype:
	default:
		return nil, ctap2.ErrInvalidSubcommand
	}
	s, err := a.settings()
	if err != nil {
		return nil, err
	}
	set, err := a.pinSet()
	if err != nil {
		return nil, err
	}
	if set || s.AlwaysUV && sub != ctap2.ConfigToggleAlwaysUV {
		if req.PinUvAuthParam == nil {
			return nil, ctap2.ErrPUATRequired
		}
		msg := append(bytes.Repeat([]byte{0xff}, 32), ctap2.CmdConfig, byte(sub))
		msg = append(msg, req.SubCommandParams...)
		if err := a.verifyPinUvAuth(req.PinUvAuthProtocol, req.PinUvAuthParam, msg, ctap2.PermAuthnrConfig, ""); err != nil {
			return nil, err
		}
	}
	switch sub {
	case ctap2.ConfigToggleAlwaysUV:
		s.AlwaysUV = !s.AlwaysUV
		if err := a.cfg.Settings.SetSettings(s); err != nil {
			return nil, err
		}
		a.log.Info("authenticatorConfig: alwaysUv", "on", s.AlwaysUV)
		return nil, nil
	case ctap2.ConfigSetMinPINLength:
		return nil, a.setMinPINLength(s, set, params)
	}
	// Section 6.11.1: a key that is not enterprise attestation capable
	// refuses enableEnterpriseAttestation; vendorPrototype (section
	// 6.11.5) names none of ours, as getInfo lists no
	// vendorPrototypeConfigCommands. OpenSK answers both with
	// CTAP1_ERR_INVALID_PARAMETER.
	return nil, ctap2.ErrInvalidParameter
}

// setMinPINLength is section 6.11.4: the minimum only grows; a new
// minimum above the current PIN's length forces a PIN change, as does
// forceChangePin (which needs a PIN); the RP list replaces the old one.
func (a *Authenticator) setMinPINLength(s tpm.Settings, pinIsSet bool, p *ctap2.ConfigParams) error {
	cur := minPINLength(s)
	newMin := cur
	if p.NewMinPINLength != nil {
		if *p.NewMinPINLength > MaxMinPINLength {
			return ctap2.ErrPINPolicyViolation
		}
		newMin = int(*p.NewMinPINLength)
	}
	if newMin < cur {
		return ctap2.ErrPINPolicyViolation
	}
	force := p.ForceChangePIN != nil && *p.ForceChangePIN
	if force && !pinIsSet {
		return ctap2.ErrPINNotSet
	}
	if len(p.MinPINLengthRPIDs) > MaxMinPINLengthRPIDs {
		// OpenSK's set_min_pin_length_rp_ids: more RP IDs than it can
		// keep is CTAP2_ERR_KEY_STORE_FULL.
		return ctap2.ErrKeyStoreFull
	}
	// A PIN whose length is unknown (set from the command line, which
	// sends only its hash, or before lengths were kept) is treated as
	// the shortest allowed, so a raised minimum forces its change.
	pinLen := s.PINLength
	if pinLen == 0 {
		pinLen = pin.MinLength
	}
	if pinIsSet && newMin > pinLen {
		force = true
	}
	next := s
	next.MinPINLength = newMin
	next.ForcePINChange = s.ForcePINChange || force
	if p.MinPINLengthRPIDs != nil {
		next.MinPINLengthRPIDs = nil
		for _, id := range p.MinPINLengthRPIDs {
			h := sha256.Sum256([]byte(id))
			if !slices.Contains(next.MinPINLengthRPIDs, h) {
				next.MinPINLengthRPIDs = append(next.MinPINLengthRPIDs, h)
			}
		}
	}
	if err := a.cfg.Settings.SetSettings(next); err != nil {
		return err
	}
	a.log.Info("authenticatorConfig: setMinPINLength", "min_pin_length", newMin, "force_pin_change", next.ForcePINChange, "rp_ids", len(next.MinPINLengthRPIDs))
	return nil
}

// pinChanged records a new PIN's length and ends forcePINChange (section
// 6.5.5.6: changePIN clears it; setPIN starts with it clear). The PIN is
// in force already: a failure here is logged, and leaves at worst a
// forced change pending, which is the safe side.
func (a *Authenticator) pinChanged(length int) {
	if a.cfg.Settings == nil {
		return
	}
	s, err := a.settings()
	if err == nil {
		s.PINLength, s.ForcePINChange = length, false
		err = a.cfg.Settings.SetSettings(s)
	}
	if err != nil {
		a.log.Error("recording the new PIN's length in the settings failed; a PIN change may be asked for again", "err", err)
	}
}

// SetSettingsFromCLI applies `tpm-u2f config`: the same rules as
// authenticatorConfig, after the caller checked the PIN. alwaysUV nil
// leaves it; minLength 0 leaves it.
func (a *Authenticator) SetSettingsFromCLI(alwaysUV *bool, minLength int, forceChange bool, rpIDs []string) error {
	if a.cfg.Settings == nil {
		return ctap2.ErrInvalidCommand
	}
	s, err := a.settings()
	if err != nil {
		return err
	}
	set, err := a.pinSet()
	if err != nil {
		return err
	}
	if minLength != 0 || forceChange || rpIDs != nil {
		p := &ctap2.ConfigParams{MinPINLengthRPIDs: rpIDs}
		if minLength != 0 {
			n := uint64(minLength)
			p.NewMinPINLength = &n
		}
		if forceChange {
			p.ForceChangePIN = &forceChange
		}
		if err := a.setMinPINLength(s, set, p); err != nil {
			return err
		}
		if s, err = a.settings(); err != nil {
			return err
		}
	}
	if alwaysUV != nil && *alwaysUV != s.AlwaysUV {
		s.AlwaysUV = *alwaysUV
		if err := a.cfg.Settings.SetSettings(s); err != nil {
			return err
		}
		a.log.Info("tpm-u2f config: alwaysUv", "on", s.AlwaysUV)
	}
	return nil
}

// U2FAllowed reports whether CTAP1/U2F is offered: not while alwaysUv is
// on, since U2F cannot verify the user (CTAP 2.1's alwaysUv feature;
// OpenSK's allows_ctap1). An unreadable configuration refuses U2F too.
func (a *Authenticator) U2FAllowed() bool {
	s, err := a.settings()
	return err == nil && !s.AlwaysUV
}

// PINChangedFromCLI ends forcePINChange after the PIN was set or changed
// through the control socket, which carries only the PIN's hash: its
// length is recorded as unknown (so a later, higher minimum forces a
// change), and the command line checked it against the minimum.
func (a *Authenticator) PINChangedFromCLI() { a.pinChanged(0) }
