package ctaphid

import (
	"encoding/binary"
	"fmt"
)

// Packet geometry (CTAP 2.1 section 11.2.4).
const (
	initDataSize   = ReportSize - 7 // CID(4) CMD(1) BCNTH(1) BCNTL(1)
	contDataSize   = ReportSize - 5 // CID(4) SEQ(1)
	MaxMessageSize = initDataSize + 128*contDataSize
	BroadcastCID   = 0xffffffff
)

// Capability flags of the INIT response (section 11.2.9.1.3).
const (
	CapWink byte = 0x01
	CapCBOR byte = 0x04
	CapNMSG byte = 0x08
)

// Error is a CTAPHID_ERROR code (section 11.2.9.1.6).
type Error byte

const (
	ErrInvalidCmd     Error = 0x01
	ErrInvalidPar     Error = 0x02
	ErrInvalidLen     Error = 0x03
	ErrInvalidSeq     Error = 0x04
	ErrMsgTimeout     Error = 0x05
	ErrChannelBusy    Error = 0x06
	ErrLockRequired   Error = 0x0a
	ErrInvalidChannel Error = 0x0b
	ErrOther          Error = 0x7f
)

func (e Error) Error() string {
	switch e {
	case ErrInvalidCmd:
		return "ctaphid: invalid command"
	case ErrInvalidPar:
		return "ctaphid: invalid parameter"
	case ErrInvalidLen:
		return "ctaphid: invalid length"
	case ErrInvalidSeq:
		return "ctaphid: invalid sequence"
	case ErrMsgTimeout:
		return "ctaphid: message timeout"
	case ErrChannelBusy:
		return "ctaphid: channel busy"
	case ErrLockRequired:
		return "ctaphid: lock required"
	case ErrInvalidChannel:
		return "ctaphid: invalid channel"
	}
	return fmt.Sprintf("ctaphid: error 0x%02x", byte(e))
}

// Fragment splits a message into an init packet and continuation packets.
func Fragment(cid uint32, cmd byte, payload []byte) ([][ReportSize]byte, error) {
	if len(payload) > MaxMessageSize {
		return nil, ErrInvalidLen
	}
	var out [][ReportSize]byte
	var p [ReportSize]byte
	binary.BigEndian.PutUint32(p[0:4], cid)
	p[4] = cmd | 0x80
	binary.BigEndian.PutUint16(p[5:7], uint16(len(payload)))
	n := copy(p[7:], payload)
	out = append(out, p)
	for seq := byte(0); n < len(payload); seq++ {
		var c [ReportSize]byte
		binary.BigEndian.PutUint32(c[0:4], cid)
		c[4] = seq
		n += copy(c[5:], payload[n:])
		out = append(out, c)
	}
	return out, nil
}

// packet is one report, decoded.
type packet struct {
	cid  uint32
	init bool
	cmd  byte // init packets: command without the 0x80 bit
	bcnt int  // init packets: declared message length
	seq  byte // continuation packets
	data []byte
}

func decodePacket(r *[ReportSize]byte) packet {
	p := packet{cid: binary.BigEndian.Uint32(r[0:4])}
	if r[4]&0x80 != 0 {
		p.init = true
		p.cmd = r[4] &^ 0x80
		p.bcnt = int(binary.BigEndian.Uint16(r[5:7]))
		p.data = r[7:]
	} else {
		p.seq = r[4]
		p.data = r[5:]
	}
	return p
}

// message is a message being reassembled, or a complete one.
type message struct {
	cid     uint32
	cmd     byte
	want    int
	payload []byte
	nextSeq byte
}

// start begins a message from an init packet. The declared length has
// been checked against MaxMessageSize by the caller.
func start(p packet) *message {
	m := &message{cid: p.cid, cmd: p.cmd, want: p.bcnt, payload: make([]byte, 0, p.bcnt)}
	m.payload = append(m.payload, p.data[:min(p.bcnt, len(p.data))]...)
	return m
}

func (m *message) complete() bool { return len(m.payload) == m.want }

// add appends a continuation packet; a sequence number out of order is
// ErrInvalidSeq.
func (m *message) add(p packet) error {
	if p.seq != m.nextSeq || p.seq > 0x7f {
		return ErrInvalidSeq
	}
	m.nextSeq++
	m.payload = append(m.payload, p.data[:min(m.want-len(m.payload), len(p.data))]...)
	return nil
}
