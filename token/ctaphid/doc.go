// Package ctaphid owns the CTAPHID transport of FIDO authenticators
// (CTAP 2.1 section 11.2): 64-byte HID reports, channels allocated by INIT,
// messages fragmented into init and continuation packets and reassembled
// up to 7609 bytes, KEEPALIVE while a request runs, CANCEL, WINK, LOCK and
// the ERROR codes for every framing fault.
//
// Server is the authenticator side; it hands whole CTAPHID_MSG and
// CTAPHID_CBOR messages to a Handler. Client is the host side, for tests
// and the demo. Both work over any Transport: uhid in production (adapted
// in cmd/tpm-u2f), UDP on loopback for development clients, and the
// in-memory pipe of package hidtest in unit tests.
package ctaphid

// ReportDescriptor is the FIDO HID report descriptor (CTAP 2.1 section
// 11.2.8.1): usage page 0xF1D0 (FIDO Alliance), usage 0x01 (CTAPHID), one
// 64-byte input report (usage 0x20) and one 64-byte output report
// (usage 0x21), no report IDs.
var ReportDescriptor = []byte{
	0x06, 0xd0, 0xf1, // Usage Page (FIDO Alliance, 0xF1D0)
	0x09, 0x01, // Usage (CTAPHID)
	0xa1, 0x01, // Collection (Application)
	0x09, 0x20, //   Usage (Data In)
	0x15, 0x00, //   Logical Minimum (0)
	0x26, 0xff, 0x00, //   Logical Maximum (255)
	0x75, 0x08, //   Report Size (8)
	0x95, 0x40, //   Report Count (64)
	0x81, 0x02, //   Input (Data, Var, Abs)
	0x09, 0x21, //   Usage (Data Out)
	0x15, 0x00, //   Logical Minimum (0)
	0x26, 0xff, 0x00, //   Logical Maximum (255)
	0x75, 0x08, //   Report Size (8)
	0x95, 0x40, //   Report Count (64)
	0x91, 0x02, //   Output (Data, Var, Abs)
	0xc0, // End Collection
}
