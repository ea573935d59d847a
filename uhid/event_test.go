package uhid

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestEventLayout(t *testing.T) {
	if EventSize != 4376 {
		t.Fatalf("sizeof(struct uhid_event) = %d, want 4376", EventSize)
	}
	desc := []byte{0x06, 0xd0, 0xf1, 0x09, 0x01}
	b, err := marshalCreate2(Config{Name: "key", Phys: "p", Uniq: "ABC123", Vendor: 0x1234, Product: 0x5678, Version: 7, Country: 9, ReportDescriptor: desc})
	if err != nil {
		t.Fatal(err)
	}
	ne := binary.NativeEndian
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"len", len(b), 4376},
		{"type", ne.Uint32(b[0:]), EventCreate2},
		{"name", string(b[4:7]), "key"},
		{"name NUL", b[7], byte(0)},
		{"phys", string(b[132:133]), "p"},
		{"uniq", string(b[196:202]), "ABC123"},
		{"rd_size", ne.Uint16(b[260:]), uint16(len(desc))},
		{"bus", ne.Uint16(b[262:]), BusUSB},
		{"vendor", ne.Uint32(b[264:]), uint32(0x1234)},
		{"product", ne.Uint32(b[268:]), uint32(0x5678)},
		{"version", ne.Uint32(b[272:]), uint32(7)},
		{"country", ne.Uint32(b[276:]), uint32(9)},
		{"rd_data", bytes.Equal(b[280:285], desc), true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	in, err := marshalInput2([]byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if ne.Uint32(in) != EventInput2 || ne.Uint16(in[4:]) != 3 || !bytes.Equal(in[6:], []byte{1, 2, 3}) {
		t.Errorf("input2 = %x", in)
	}
	if _, err := marshalInput2(make([]byte, DataMax+1)); err == nil {
		t.Error("oversized input report accepted")
	}
}

func outputEvent(data []byte) []byte {
	b := make([]byte, EventSize)
	binary.NativeEndian.PutUint32(b, EventOutput)
	copy(b[4:], data)
	binary.NativeEndian.PutUint16(b[4+DataMax:], uint16(len(data)))
	b[4+DataMax+2] = 1 // UHID_OUTPUT_REPORT
	return b
}

func TestParseOutputAndStripReportID(t *testing.T) {
	report := bytes.Repeat([]byte{0xab}, 64)
	ev, err := ParseEvent(outputEvent(append([]byte{0}, report...)))
	if err != nil || ev.Type != EventOutput || len(ev.Data) != 65 {
		t.Fatalf("ParseEvent = %+v, %v", ev, err)
	}
	if got := StripReportID(ev.Data, 64); !bytes.Equal(got, report) {
		t.Errorf("report ID not stripped: %d bytes", len(got))
	}
	if got := StripReportID(report, 64); !bytes.Equal(got, report) {
		t.Error("a report without an ID byte was changed")
	}
	for _, short := range [][]byte{nil, {6, 0, 0}, outputEvent(nil)[:100]} {
		if _, err := ParseEvent(short); !errors.Is(err, ErrShortEvent) {
			t.Errorf("short event %d bytes: err = %v", len(short), err)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	desc := []byte{1}
	bad := []Config{
		{Uniq: "has space", ReportDescriptor: desc},
		{Uniq: "bin\x01", ReportDescriptor: desc},
		{Name: string(make([]byte, 128)), ReportDescriptor: desc},
		{Uniq: "ok"},
	}
	for i, c := range bad {
		if _, err := marshalCreate2(c); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add(outputEvent(make([]byte, 65)))
	f.Add([]byte{9, 0, 0, 0, 1, 0, 0, 0})
	f.Add([]byte{2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvent(b)
		if err == nil && ev.Type == EventOutput && len(ev.Data) > DataMax {
			t.Fatal("output report larger than UHID_DATA_MAX")
		}
	})
}
