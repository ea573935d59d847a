// Package uhid owns a virtual HID device made through Linux's /dev/uhid
// (Documentation/hid/uhid.rst): creating it with a report descriptor,
// reading the output reports hosts write to its hidraw node, sending input
// reports back, and destroying or re-creating it. Nothing here knows about
// FIDO; the report descriptor is the caller's.
//
// The kernel's event structs are mirrored as explicit byte layouts (they
// are packed, so Go struct layout cannot be relied on); this file is
// portable so that the layouts are tested on any OS.
package uhid

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Event types from linux/uhid.h (enum uhid_event_type).
const (
	EventDestroy        uint32 = 1
	EventStart          uint32 = 2
	EventStop           uint32 = 3
	EventOpen           uint32 = 4
	EventClose          uint32 = 5
	EventOutput         uint32 = 6
	EventGetReport      uint32 = 9
	EventGetReportReply uint32 = 10
	EventCreate2        uint32 = 11
	EventInput2         uint32 = 12
	EventSetReport      uint32 = 13
	EventSetReportReply uint32 = 14
)

// Sizes from linux/uhid.h and linux/hid.h.
const (
	DataMax       = 4096 // UHID_DATA_MAX
	DescriptorMax = 4096 // HID_MAX_DESCRIPTOR_SIZE
	// create2Size is sizeof(struct uhid_create2_req): name[128] phys[64]
	// uniq[64] rd_size(2) bus(2) vendor(4) product(4) version(4)
	// country(4) rd_data[4096]; the largest member of the union.
	create2Size = 128 + 64 + 64 + 2 + 2 + 4*4 + DescriptorMax
	// EventSize is sizeof(struct uhid_event): a u32 type and the union.
	EventSize = 4 + create2Size
	// BusUSB is BUS_USB from linux/input.h.
	BusUSB uint16 = 0x03
)

// Config describes the device the kernel creates (struct uhid_create2_req).
type Config struct {
	Name, Phys, Uniq string
	Bus              uint16 // default BusUSB
	Vendor, Product  uint32
	Version, Country uint32
	ReportDescriptor []byte
}

func (c Config) validate() error {
	for _, f := range []struct {
		name, v string
		max     int
	}{{"name", c.Name, 128}, {"phys", c.Phys, 64}, {"uniq", c.Uniq, 64}} {
		if len(f.v) >= f.max {
			return fmt.Errorf("uhid: %s is %d bytes, at most %d", f.name, len(f.v), f.max-1)
		}
	}
	for _, r := range c.Uniq {
		// udev copies uniq into ID_SERIAL; bytes outside printable ASCII
		// there break its uaccess tagging of the hidraw node.
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("uhid: uniq must be printable ASCII without spaces")
		}
	}
	if len(c.ReportDescriptor) == 0 || len(c.ReportDescriptor) > DescriptorMax {
		return fmt.Errorf("uhid: report descriptor of %d bytes (want 1..%d)", len(c.ReportDescriptor), DescriptorMax)
	}
	return nil
}

// marshalCreate2 is a UHID_CREATE2 event.
func marshalCreate2(c Config) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.Bus == 0 {
		c.Bus = BusUSB
	}
	b := make([]byte, EventSize)
	binary.NativeEndian.PutUint32(b[0:], EventCreate2)
	copy(b[4:4+128], c.Name)
	copy(b[132:132+64], c.Phys)
	copy(b[196:196+64], c.Uniq)
	binary.NativeEndian.PutUint16(b[260:], uint16(len(c.ReportDescriptor)))
	binary.NativeEndian.PutUint16(b[262:], c.Bus)
	binary.NativeEndian.PutUint32(b[264:], c.Vendor)
	binary.NativeEndian.PutUint32(b[268:], c.Product)
	binary.NativeEndian.PutUint32(b[272:], c.Version)
	binary.NativeEndian.PutUint32(b[276:], c.Country)
	copy(b[280:], c.ReportDescriptor)
	return b, nil
}

// marshalInput2 is a UHID_INPUT2 event (struct uhid_input2_req: size u16,
// data[4096]). Only the bytes up to the data are written: the kernel reads
// what it needs.
func marshalInput2(data []byte) ([]byte, error) {
	if len(data) > DataMax {
		return nil, fmt.Errorf("uhid: input report of %d bytes", len(data))
	}
	b := make([]byte, 4+2+len(data))
	binary.NativeEndian.PutUint32(b[0:], EventInput2)
	binary.NativeEndian.PutUint16(b[4:], uint16(len(data)))
	copy(b[6:], data)
	return b, nil
}

func marshalType(t uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, t)
	return b
}

// marshalReportReply answers a GET_REPORT or SET_REPORT request with an
// error, so the host does not wait for the kernel's 5 s timeout: the FIDO
// protocol uses neither.
func marshalReportReply(t uint32, id uint32, errno uint16) []byte {
	b := make([]byte, 4+4+2+2)
	binary.NativeEndian.PutUint32(b[0:], t)
	binary.NativeEndian.PutUint32(b[4:], id)
	binary.NativeEndian.PutUint16(b[8:], errno)
	return b
}

// Event is a decoded event read from /dev/uhid.
type Event struct {
	Type uint32
	// Data is the report of a UHID_OUTPUT event (struct uhid_output_req:
	// data[4096], size u16, rtype u8).
	Data []byte
	// ID is the request id of GET_REPORT / SET_REPORT (their first u32).
	ID uint32
}

// ErrShortEvent is a buffer too short for the event type it names.
var ErrShortEvent = errors.New("uhid: short event")

// ParseEvent decodes an event. It never panics on short or odd buffers.
func ParseEvent(b []byte) (Event, error) {
	if len(b) < 4 {
		return Event{}, ErrShortEvent
	}
	ev := Event{Type: binary.NativeEndian.Uint32(b)}
	switch ev.Type {
	case EventOutput:
		if len(b) < 4+DataMax+2 {
			return ev, ErrShortEvent
		}
		size := int(binary.NativeEndian.Uint16(b[4+DataMax:]))
		if size > DataMax {
			return ev, fmt.Errorf("uhid: output report size %d", size)
		}
		ev.Data = b[4 : 4+size]
	case EventGetReport, EventSetReport:
		if len(b) < 8 {
			return ev, ErrShortEvent
		}
		ev.ID = binary.NativeEndian.Uint32(b[4:])
	}
	return ev, nil
}

// StripReportID removes the report number byte that hidraw passes on for
// a device without numbered reports: a host writes 1+N bytes to
// /dev/hidrawN with byte 0 the report ID (0), and the kernel hands all of
// them to uhid. want is the report size the descriptor declares.
func StripReportID(data []byte, want int) []byte {
	if len(data) == want+1 && data[0] == 0 {
		return data[1:]
	}
	return data
}
