package ctaphid

import (
	"context"
	"net"
)

// ReportSize is the size of every CTAPHID report, in both directions
// (CTAP 2.1 section 11.2.4: HID_RPT_SIZE 64 for full-speed USB).
const ReportSize = 64

// Report is one 64-byte HID report. Peer is the return address for
// transports that have one (UDP); the server copies it from a request
// report onto every reply report for the same channel. It is nil for uhid
// and for the in-memory pipe.
type Report struct {
	Data [ReportSize]byte
	Peer any
}

// Transport moves HID reports between the server and one host-side device.
// ReadReport blocks until a report arrives; after Close, ReadReport and
// WriteReport return an error wrapping net.ErrClosed. One goroutine may call
// ReadReport while others call WriteReport.
type Transport interface {
	ReadReport() (Report, error)
	WriteReport(Report) error
	Close() error
}

// Command codes (CTAP 2.1 section 11.2.9), without the 0x80 init bit.
const (
	CmdPing      byte = 0x01
	CmdMsg       byte = 0x03
	CmdLock      byte = 0x04
	CmdInit      byte = 0x06
	CmdWink      byte = 0x08
	CmdCBOR      byte = 0x10
	CmdCancel    byte = 0x11
	CmdKeepalive byte = 0x3b
	CmdError     byte = 0x3f
)

// Keepalive status codes sent in CTAPHID_KEEPALIVE.
const (
	StatusProcessing byte = 1
	StatusUPNeeded   byte = 2
)

// Request is one reassembled CTAPHID_MSG or CTAPHID_CBOR message handed to a
// Handler.
type Request struct {
	Channel uint32
	Command byte // CmdMsg or CmdCBOR
	Payload []byte
	// SetStatus changes the status carried by the KEEPALIVE reports the
	// server sends every 100 ms while the request runs, and sends one at
	// once when the status changed. It is safe to call from any goroutine
	// until Handle returns.
	SetStatus func(status byte)
}

// Handler answers whole messages. The context is cancelled when the host
// sends CTAPHID_CANCEL on the request's channel or the server stops; the
// handler then returns promptly (for CBOR, with CTAP2_ERR_KEEPALIVE_CANCEL).
// The returned bytes are the whole response payload: an APDU response (data
// and status word) for CmdMsg, a status byte and CBOR for CmdCBOR.
type Handler interface {
	Handle(ctx context.Context, req Request) []byte
}

// errClosed is what transports wrap when closed (net.ErrClosed).
var errClosed = net.ErrClosed
