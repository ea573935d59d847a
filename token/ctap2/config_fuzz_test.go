package ctap2

import (
	"bytes"
	"errors"
	"testing"
)

func configSeeds(f *testing.F) {
	params, _ := Marshal(map[int]any{1: 8, 2: []string{"example.org", "example.com"}, 3: true})
	for _, m := range []map[int]any{
		{1: ConfigToggleAlwaysUV, 3: 2, 4: bytes.Repeat([]byte{5}, 32)},
		{1: ConfigToggleAlwaysUV},
		{1: ConfigSetMinPINLength, 2: cborRaw(params), 3: 1, 4: bytes.Repeat([]byte{5}, 16)},
		{1: ConfigEnableEnterpriseAttestation, 3: 2, 4: bytes.Repeat([]byte{5}, 32)},
		{1: ConfigVendorPrototype, 2: cborRaw([]byte{0xa1, 0x01, 0x1a, 0x12, 0x34, 0x56, 0x78})},
	} {
		b, _ := Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0xa0})
}

func FuzzDecodeConfig(f *testing.F) {
	configSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, p, err := DecodeConfig(b)
		checkDecode(t, b, err)
		if err != nil {
			return
		}
		if r.SubCommand == nil {
			t.Fatal("accepted a request without a subcommand")
		}
		if r.SubCommandParams != nil {
			checkDecode(t, r.SubCommandParams, nil)
		}
		for _, id := range p.MinPINLengthRPIDs {
			if id == "" {
				t.Fatal("accepted an empty RP ID")
			}
		}
	})
}

func TestDecodeConfig(t *testing.T) {
	params, _ := Marshal(map[int]any{1: 6, 2: []string{"example.org"}, 3: true})
	b, _ := Marshal(map[int]any{1: ConfigSetMinPINLength, 2: cborRaw(params), 3: 2, 4: []byte{1}})
	r, p, err := DecodeConfig(b)
	if err != nil || *r.SubCommand != ConfigSetMinPINLength || !bytes.Equal(r.SubCommandParams, params) ||
		*p.NewMinPINLength != 6 || len(p.MinPINLengthRPIDs) != 1 || !*p.ForceChangePIN {
		t.Fatalf("%+v %+v %v", r, p, err)
	}
	for name, m := range map[string]map[int]any{
		"no subcommand":        {3: 2},
		"params not a map":     {1: 3, 2: cborRaw([]byte{0x01})},
		"minimum not a number": {1: 3, 2: cborRaw([]byte{0xa1, 0x01, 0x61, 0x61})},
		"empty RP ID":          {1: 3, 2: cborRaw([]byte{0xa1, 0x02, 0x81, 0x60})},
	} {
		b, _ := Marshal(m)
		if _, _, err := DecodeConfig(b); err == nil {
			t.Errorf("%s: accepted", name)
		} else if var_ := (Status(0)); !errors.As(err, &var_) {
			t.Errorf("%s: %v is not a Status", name, err)
		}
	}
}
