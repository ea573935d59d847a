package control

import "errors"

// ConfigChange is what `tpm-u2f config set` asks for: the same changes as
// CTAP's authenticatorConfig, with the same rules (the minimum PIN length
// only grows). Zero fields change nothing.
type ConfigChange struct {
	AlwaysUV       *bool    `json:"always_uv,omitempty"`
	MinPINLength   int      `json:"min_pin_length,omitempty"`
	ForcePINChange bool     `json:"force_pin_change,omitempty"`
	RPIDs          []string `json:"rp_ids,omitempty"`
}

// Settings is what `tpm-u2f config` shows.
type Settings struct {
	AlwaysUV       bool `json:"always_uv"`
	MinPINLength   int  `json:"min_pin_length"`
	ForcePINChange bool `json:"force_pin_change"`
	RPIDs          int  `json:"rp_ids"` // how many; only their hashes are kept
	PINSet         bool `json:"pin_set"`
}

// ConfigHandler is the part of a Handler that answers config requests;
// a Handler without it refuses them.
type ConfigHandler interface {
	// Config applies change (nil: none), checking pinHash first when a
	// PIN is set, and returns the settings then in force.
	Config(change *ConfigChange, pinHash []byte) (Settings, error)
}

// ErrPINRequired: a change while a PIN is set came without it.
var ErrPINRequired = errors.New("the key has a PIN: give it to change the settings")

func (s *Server) config(req Request) Response {
	h, ok := s.h.(ConfigHandler)
	if !ok {
		return Response{Error: "this daemon has no settings to show"}
	}
	if req.PINHash != nil && len(req.PINHash) != PINHashSize {
		return Response{Error: "malformed request: the PIN hash must be 16 bytes"}
	}
	st, err := h.Config(req.Config, req.PINHash)
	if err != nil {
		return Response{Error: err.Error(), Settings: nil}
	}
	return Response{OK: true, Settings: &st}
}
