package token

import "fmt"

// ISO 7816-4 status words used by U2F (FIDO U2F Raw Message Formats v1.2,
// section 3.3, plus ISO codes for cases that document leaves open).
const (
	SWNoError                uint16 = 0x9000
	SWConditionsNotSatisfied uint16 = 0x6985 // user presence required; or "this handle is ours" for check-only
	SWWrongData              uint16 = 0x6a80 // bad key handle, or one made for another appID
	SWWrongLength            uint16 = 0x6700
	SWIncorrectP1P2          uint16 = 0x6a86 // unknown AUTHENTICATE control byte (ISO 7816-4)
	SWInsNotSupported        uint16 = 0x6d00
	SWClaNotSupported        uint16 = 0x6e00
	SWUnknown                uint16 = 0x6f00 // internal failure (the TPM), no more precise diagnosis
)

// APDUError is a U2F request rejected with a status word.
type APDUError struct {
	SW     uint16
	Reason string
}

func (e *APDUError) Error() string { return fmt.Sprintf("u2f: %s (SW %04X)", e.Reason, e.SW) }

func apduErr(sw uint16, reason string) *APDUError { return &APDUError{SW: sw, Reason: reason} }

// APDU is a parsed command APDU (ISO 7816-4 section 5.1, as U2F Raw
// Message Formats v1.2 section 3 uses it over CTAPHID).
type APDU struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	// Le is the expected response length; 0 means absent. U2F ignores it
	// beyond the encoding check, since responses are sized by the command.
	Le int
}

// ParseAPDU decodes a short or extended command APDU. Every case of
// ISO 7816-4 is accepted: no body; Le only; Lc and data; Lc, data and Le.
// A length field that does not match the bytes present is SWWrongLength.
func ParseAPDU(b []byte) (*APDU, error) {
	if len(b) < 4 {
		return nil, apduErr(SWWrongLength, "APDU shorter than its header")
	}
	a := &APDU{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return a, nil
	case len(body) == 1: // case 2 short: Le (0 means 256)
		a.Le = int(body[0])
		if a.Le == 0 {
			a.Le = 256
		}
		return a, nil
	case body[0] != 0: // short Lc
		lc := int(body[0])
		rest := body[1:]
		switch len(rest) {
		case lc: // case 3 short
		case lc + 1: // case 4 short
			a.Le = int(rest[lc])
			if a.Le == 0 {
				a.Le = 256
			}
		default:
			return nil, apduErr(SWWrongLength, "short Lc does not match the data")
		}
		a.Data = rest[:lc]
		return a, nil
	}
	// Extended: a zero byte, then two-byte Lc or Le.
	if len(body) < 3 {
		return nil, apduErr(SWWrongLength, "truncated extended length")
	}
	n := int(body[1])<<8 | int(body[2])
	rest := body[3:]
	if len(rest) == 0 { // case 2 extended: Le only
		a.Le = n
		if a.Le == 0 {
			a.Le = 65536
		}
		return a, nil
	}
	if n == 0 {
		// An extended Lc of zero followed by a two-byte Le: not in ISO
		// 7816-4, but python-fido2 and others send VERSION this way and
		// shipping keys accept it.
		if len(rest) == 2 {
			a.Le = int(rest[0])<<8 | int(rest[1])
			if a.Le == 0 {
				a.Le = 65536
			}
			return a, nil
		}
		return nil, apduErr(SWWrongLength, "extended Lc of zero with data")
	}
	switch len(rest) {
	case n: // case 3 extended
	case n + 2: // case 4 extended
		a.Le = int(rest[n])<<8 | int(rest[n+1])
		if a.Le == 0 {
			a.Le = 65536
		}
	default:
		return nil, apduErr(SWWrongLength, "extended Lc does not match the data")
	}
	a.Data = rest[:n]
	return a, nil
}

// Encode returns the APDU in extended form when the data needs it (or
// when forceExtended), short form otherwise. Clients and tests use it.
func (a *APDU) Encode(forceExtended bool) []byte {
	out := []byte{a.CLA, a.INS, a.P1, a.P2}
	if len(a.Data) == 0 && a.Le == 0 {
		return out // case 1 has no length field in either form
	}
	ext := forceExtended || len(a.Data) > 255 || a.Le > 256
	if !ext {
		if len(a.Data) > 0 {
			out = append(out, byte(len(a.Data)))
			out = append(out, a.Data...)
		}
		if a.Le > 0 {
			out = append(out, byte(a.Le))
		}
		return out
	}
	out = append(out, 0)
	if len(a.Data) > 0 {
		out = append(out, byte(len(a.Data)>>8), byte(len(a.Data)))
		out = append(out, a.Data...)
	}
	if a.Le > 0 {
		le := a.Le
		if le == 65536 {
			le = 0
		}
		out = append(out, byte(le>>8), byte(le))
	}
	return out
}

func withSW(data []byte, sw uint16) []byte {
	return append(data, byte(sw>>8), byte(sw))
}
