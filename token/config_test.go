package token_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// configToken is pinToken with authenticatorConfig: the settings in the
// simulator's TPM.
func configToken(t *testing.T) (*token.Authenticator, *tpm.Engine) {
	t.Helper()
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	store, err := credstore.Open(filepath.Join(t.TempDir(), "credentials.db"), bytes.Repeat([]byte{1}, 32), 50)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	a := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, Resident: store,
		PIN: token.TPMPIN{Engine: e}, Secrets: token.TPMKeys{Engine: e}, Settings: e, Logger: testLogger(t)})
	t.Cleanup(a.Close)
	return a, e
}

// config sends authenticatorConfig, MACed with the platform's token over
// 32×0xff || 0x0d || subCommand || subCommandParams when it has one.
func (p *platform) config(sub int, params map[int]any) ctap2.Status {
	p.t.Helper()
	req := map[int]any{1: sub}
	var raw []byte
	if params != nil {
		var err error
		if raw, err = ctap2.Marshal(params); err != nil {
			p.t.Fatal(err)
		}
		req[2] = cbor.RawMessage(raw)
	}
	if p.token != nil {
		msg := append(bytes.Repeat([]byte{0xff}, 32), 0x0d, byte(sub))
		req[3] = p.proto.Version()
		req[4] = p.proto.Authenticate(p.token, append(msg, raw...))
	}
	st, _ := call(p.t, p.a, ctap2.CmdConfig, req)
	return st
}

func u2fVersionSW(a *token.Authenticator) uint16 {
	rsp := a.HandleAPDU(context.Background(), []byte{0, 3, 0, 0, 0, 0, 0})
	return uint16(rsp[len(rsp)-2])<<8 | uint16(rsp[len(rsp)-1])
}

func TestAuthenticatorConfigToggleAlwaysUV(t *testing.T) {
	a, _ := configToken(t)
	p := newPlatform(t, a, 2)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	i := info(t, a)
	if !i.Options["authnrCfg"] || i.Options["alwaysUv"] || !i.Options["setMinPINLength"] || !i.Options["makeCredUvNotRqd"] ||
		!slices.Contains(i.Versions, "U2F_V2") || i.MaxRPIDsForSetMinPINLength == nil || *i.MaxRPIDsForSetMinPINLength != 4 ||
		!slices.Equal(i.AuthenticatorConfigCommands, []uint64{2, 3}) || i.MinPINLength != 4 {
		t.Fatalf("getInfo before: %+v", i)
	}

	// With a PIN set, a pinUvAuthToken with acfg is needed.
	if st := p.config(ctap2.ConfigToggleAlwaysUV, nil); st != ctap2.ErrPUATRequired {
		t.Fatalf("without pinUvAuthParam: %v", st)
	}
	if st := p.getToken("1234", ctap2.PermGetAssertion, "example.org"); st != ctap2.OK {
		t.Fatal(st)
	}
	if st := p.config(ctap2.ConfigToggleAlwaysUV, nil); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("token without acfg: %v", st)
	}
	if st := p.getToken("1234", ctap2.PermAuthnrConfig, ""); st != ctap2.OK {
		t.Fatalf("acfg permission: %v", st)
	}
	// The MAC must cover the 32×0xff prefix: one over the bare
	// subcommand does not verify.
	bare := map[int]any{1: ctap2.ConfigToggleAlwaysUV, 3: 2, 4: p.proto.Authenticate(p.token, []byte{0x0d, ctap2.ConfigToggleAlwaysUV})}
	if st, _ := call(t, a, ctap2.CmdConfig, bare); st != ctap2.ErrPINAuthInvalid {
		t.Fatalf("MAC over the wrong message: %v", st)
	}
	if st := p.config(ctap2.ConfigToggleAlwaysUV, nil); st != ctap2.OK {
		t.Fatalf("toggleAlwaysUv: %v", st)
	}
	i = info(t, a)
	if !i.Options["alwaysUv"] || i.Options["makeCredUvNotRqd"] || slices.Contains(i.Versions, "U2F_V2") {
		t.Fatalf("getInfo with alwaysUv: %+v", i)
	}

	// Every makeCredential and getAssertion needs UV now; U2F is off.
	if st, _ := call(t, a, ctap2.CmdMakeCredential, makeCredParams("example.org", nil)); st != ctap2.ErrPUATRequired {
		t.Fatalf("makeCredential without UV: %v", st)
	}
	cdh := sha256.Sum256([]byte("cd"))
	for _, up := range []bool{true, false} {
		if st, _ := call(t, a, ctap2.CmdGetAssertion, map[int]any{1: "example.org", 2: cdh[:], 5: map[string]bool{"up": up}}); st != ctap2.ErrPUATRequired {
			t.Fatalf("getAssertion (up=%v) without UV: %v", up, st)
		}
	}
	if sw := u2fVersionSW(a); sw != token.SWInsNotSupported {
		t.Fatalf("U2F VERSION with alwaysUv: %04x", sw)
	}
	if a.U2FAllowed() {
		t.Fatal("U2FAllowed with alwaysUv")
	}
	// With UV, they work.
	if st := p.getToken("1234", ctap2.PermMakeCredential, "example.org"); st != ctap2.OK {
		t.Fatal(st)
	}
	mc := makeCredParams("example.org", map[int]any{8: p.proto.Authenticate(p.token, makeCredParams("example.org", nil)[1].([]byte)), 9: p.proto.Version()})
	if st, _ := call(t, a, ctap2.CmdMakeCredential, mc); st != ctap2.OK {
		t.Fatalf("makeCredential with UV: %v", st)
	}

	// And off again.
	if st := p.getToken("1234", ctap2.PermAuthnrConfig, ""); st != ctap2.OK {
		t.Fatal(st)
	}
	if st := p.config(ctap2.ConfigToggleAlwaysUV, nil); st != ctap2.OK {
		t.Fatal(st)
	}
	if i := info(t, a); i.Options["alwaysUv"] || !slices.Contains(i.Versions, "U2F_V2") || u2fVersionSW(a) != token.SWNoError {
		t.Fatalf("after toggling back: %+v", i)
	}
}

func TestAuthenticatorConfigUnsupportedSubcommands(t *testing.T) {
	a, _ := configToken(t)
	p := newPlatform(t, a, 1)
	if st := p.setPIN(padded("1234")); st != ctap2.OK {
		t.Fatal(st)
	}
	if st := p.getToken("1234", ctap2.PermAuthnrConfig, ""); st != ctap2.OK {
		t.Fatal(st)
	}
	for sub, want := range map[int]ctap2.Status{
		ctap2.ConfigEnableEnterpriseAttestation: ctap2.ErrInvalidParameter,
		ctap2.ConfigVendorPrototype:             ctap2.ErrInvalidParameter,
		0x04:                                    ctap2.ErrInvalidSubcommand,
	} {
		if st := p.config(sub, nil); st != want {
			t.Errorf("subcommand 0x%02x: %v, want %v", sub, st, want)
		}
	}
}

func TestSetMinPINLength(t *testing.T) {
	a, e := configToken(t)
	p := newPlatform(t, a, 2)

	// Without a PIN no token is needed (section 6.11), but forceChangePin
	// needs a PIN, and a new PIN must meet the minimum.
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{3: true}); st != ctap2.ErrPINNotSet {
		t.Fatalf("forceChangePin without a PIN: %v", st)
	}
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{1: 6}); st != ctap2.OK {
		t.Fatalf("setMinPINLength 6 without a PIN: %v", st)
	}
	if i := info(t, a); i.MinPINLength != 6 || i.ForcePINChange {
		t.Fatalf("getInfo: minPINLength %d forcePINChange %v", i.MinPINLength, i.ForcePINChange)
	}
	if st := p.setPIN(padded("12345")); st != ctap2.ErrPINPolicyViolation {
		t.Fatalf("setPIN shorter than the minimum: %v", st)
	}
	if st := p.setPIN(padded("äöüäöü")); st != ctap2.OK { // 6 code points, 12 bytes
		t.Fatal(st)
	}

	if st := p.getToken("äöüäöü", ctap2.PermAuthnrConfig, ""); st != ctap2.OK {
		t.Fatal(st)
	}
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{1: 5}); st != ctap2.ErrPINPolicyViolation {
		t.Fatalf("lowering the minimum: %v", st)
	}
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{1: 64}); st != ctap2.ErrPINPolicyViolation {
		t.Fatalf("a minimum no PIN can meet: %v", st)
	}
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{2: []string{"a.org", "b.org", "c.org", "d.org", "e.org"}}); st != ctap2.ErrKeyStoreFull {
		t.Fatalf("five RP IDs: %v", st)
	}
	// The same minimum as the PIN's length forces nothing.
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{1: 6, 2: []string{"example.org"}}); st != ctap2.OK {
		t.Fatal(st)
	}
	if i := info(t, a); i.ForcePINChange {
		t.Fatal("forcePINChange for a PIN as long as the minimum")
	}
	if s, _ := e.Settings(); len(s.MinPINLengthRPIDs) != 1 || s.MinPINLengthRPIDs[0] != sha256.Sum256([]byte("example.org")) {
		t.Fatalf("RP IDs kept: %d", len(s.MinPINLengthRPIDs))
	}
	// A minimum above the PIN's length forces a change.
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{1: 8}); st != ctap2.OK {
		t.Fatal(st)
	}
	if i := info(t, a); i.MinPINLength != 8 || !i.ForcePINChange {
		t.Fatalf("getInfo: minPINLength %d forcePINChange %v", i.MinPINLength, i.ForcePINChange)
	}
	for _, perms := range []uint64{ctap2.PermGetAssertion, ctap2.PermAuthnrConfig} {
		if st := p.getToken("äöüäöü", perms, "example.org"); st != ctap2.ErrPINPolicyViolation {
			t.Fatalf("token while forcePINChange: %v", st)
		}
	}
	if r, _ := retries(t, a); r != 8 {
		t.Fatalf("the right PIN cost a retry: %d left", r)
	}
	if st := p.changePIN("äöüäöü", "1234567"); st != ctap2.ErrPINPolicyViolation {
		t.Fatalf("changePIN to a PIN under the new minimum: %v", st)
	}
	if st := p.changePIN("äöüäöü", "12345678"); st != ctap2.OK {
		t.Fatalf("changePIN: %v", st)
	}
	if i := info(t, a); i.ForcePINChange {
		t.Fatal("forcePINChange after changePIN")
	}
	if st := p.getToken("12345678", ctap2.PermAuthnrConfig, ""); st != ctap2.OK {
		t.Fatalf("token after changePIN: %v", st)
	}
	// forceChangePin alone forces a change of a PIN long enough.
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{3: true}); st != ctap2.OK {
		t.Fatal(st)
	}
	if i := info(t, a); !i.ForcePINChange || i.MinPINLength != 8 {
		t.Fatalf("forceChangePin: %+v", i)
	}
}

// TestSettingsOutliveTheToken: a new Authenticator on the same TPM (a
// restart) has the settings; they are the TPM's, not the process's.
func TestSettingsOutliveTheToken(t *testing.T) {
	a, e := configToken(t)
	p := newPlatform(t, a, 2)
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{1: 7}); st != ctap2.OK {
		t.Fatal(st)
	}
	if st := p.config(ctap2.ConfigToggleAlwaysUV, nil); st != ctap2.OK {
		t.Fatal(st)
	}
	b := token.New(token.Config{Keys: token.TPMKeys{Engine: e}, Presence: presence.Always{}, PIN: token.TPMPIN{Engine: e}, Settings: e})
	defer b.Close()
	if i := info(t, b); !i.Options["alwaysUv"] || i.MinPINLength != 7 {
		t.Fatalf("after restart: %+v", i)
	}
	// alwaysUv without a PIN: the platform is told to set one.
	if st, _ := call(t, b, ctap2.CmdMakeCredential, makeCredParams("example.org", nil)); st != ctap2.ErrPINNotSet {
		t.Fatalf("makeCredential with alwaysUv and no PIN: %v", st)
	}
	// Without a PIN, alwaysUv can be switched off with no token; the
	// other subcommands need one while it is on.
	pb := newPlatform(t, b, 2)
	if st := pb.config(ctap2.ConfigSetMinPINLength, map[int]any{1: 8}); st != ctap2.ErrPUATRequired {
		t.Fatalf("setMinPINLength with alwaysUv, no token: %v", st)
	}
	if st := pb.config(ctap2.ConfigToggleAlwaysUV, nil); st != ctap2.OK {
		t.Fatal(st)
	}
}

// The minPinLength extension (CTAP 2.1 section 12.4) tells the current
// minimum to an RP on setMinPINLength's list, and nothing to others.
func TestMinPinLengthExtensionForListedRP(t *testing.T) {
	a, _ := configToken(t)
	p := newPlatform(t, a, 2)
	if st := p.config(ctap2.ConfigSetMinPINLength, map[int]any{1: 7, 2: []string{"bank.example"}}); st != ctap2.OK {
		t.Fatalf("setMinPINLength: %v", st)
	}
	for rp, want := range map[string]any{"bank.example": uint64(7), "other.example": nil} {
		params := makeCredParams(rp, map[int]any{6: map[string]any{"minPinLength": true}})
		st, body := call(t, a, ctap2.CmdMakeCredential, params)
		if st != ctap2.OK {
			t.Fatalf("%s: makeCredential %v", rp, st)
		}
		var rsp ctap2.MakeCredentialResponse
		if err := cbor.Unmarshal(body, &rsp); err != nil {
			t.Fatal(err)
		}
		ad := rsp.AuthData
		var exts map[string]any
		if ad[32]&ctap2.FlagED != 0 {
			n := int(binary.BigEndian.Uint16(ad[53:55]))
			var cose cbor.RawMessage
			rest, err := cbor.UnmarshalFirst(ad[55+n:], &cose)
			if err != nil || cbor.Unmarshal(rest, &exts) != nil {
				t.Fatalf("%s: extensions: %v", rp, err)
			}
		}
		if got := exts["minPinLength"]; got != want {
			t.Errorf("%s: minPinLength %v, want %v", rp, got, want)
		}
	}
}
