package ctaphid

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// FuzzAssemble feeds a sequence of reports (the input cut in 64-byte
// pieces) to the reassembly code the server uses: it never panics, every
// error is an Error, and every completed message re-fragments into the
// packets that made it.
func FuzzAssemble(f *testing.F) {
	pkts, _ := Fragment(0x01020304, CmdPing, bytes.Repeat([]byte{7}, 200))
	var seed []byte
	for _, p := range pkts {
		seed = append(seed, p[:]...)
	}
	f.Add(seed)
	init, _ := Fragment(BroadcastCID, CmdInit, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(init[0][:])
	f.Fuzz(func(t *testing.T, in []byte) {
		var m *message
		var reports [][ReportSize]byte
		for len(in) >= ReportSize {
			var r [ReportSize]byte
			copy(r[:], in)
			in = in[ReportSize:]
			p := decodePacket(&r)
			if p.init {
				if p.bcnt > MaxMessageSize {
					continue
				}
				m, reports = start(p), [][ReportSize]byte{r}
			} else if m != nil && p.cid == m.cid {
				if err := m.add(p); err != nil {
					if _, ok := err.(Error); !ok {
						t.Fatalf("error %v is not an Error", err)
					}
					m = nil
					continue
				}
				reports = append(reports, r)
			} else {
				continue
			}
			if m.complete() {
				again, err := Fragment(m.cid, m.cmd, m.payload)
				if err != nil || len(again) != len(reports) {
					t.Fatalf("re-fragmenting gave %d packets (%v), had %d", len(again), err, len(reports))
				}
				for i := range again {
					// Padding after the payload is not part of the message.
					used := 7 + min(m.want, initDataSize)
					if i > 0 {
						used = 5 + min(m.want-initDataSize-(i-1)*contDataSize, contDataSize)
					}
					if !bytes.Equal(again[i][:used], reports[i][:used]) {
						t.Fatalf("packet %d differs after a round trip", i)
					}
				}
				m = nil
			}
		}
	})
}

type echo struct{}

func (echo) Handle(_ context.Context, req Request) []byte { return req.Payload }

type sink struct {
	in     chan Report
	out    chan Report
	closed chan struct{}
	once   sync.Once
}

func (s *sink) ReadReport() (Report, error) {
	select {
	case r := <-s.in:
		return r, nil
	case <-s.closed:
		return Report{}, errClosed
	}
}
func (s *sink) WriteReport(r Report) error {
	select {
	case s.out <- r:
	default:
	}
	return nil
}
func (s *sink) Close() error { s.once.Do(func() { close(s.closed) }); return nil }

// FuzzServer feeds arbitrary reports to a whole server: it never panics or
// hangs, and every report it writes is a well-formed init or continuation
// packet.
func FuzzServer(f *testing.F) {
	init, _ := Fragment(BroadcastCID, CmdInit, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	msg, _ := Fragment(0x11223344, CmdMsg, bytes.Repeat([]byte{3}, 100))
	seed := append(init[0][:], msg[0][:]...)
	seed = append(seed, msg[1][:]...)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &sink{in: make(chan Report), out: make(chan Report, 4096), closed: make(chan struct{})}
		srv := NewServer(s, echo{}, Options{Capabilities: CapWink | CapCBOR, MessageTimeout: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- srv.Serve(ctx) }()
		for len(in) >= ReportSize {
			var r Report
			copy(r.Data[:], in)
			in = in[ReportSize:]
			s.in <- r
		}
		cancel()
		<-done
		close(s.out)
		for r := range s.out {
			if r.Data[4]&0x80 != 0 {
				if n := int(r.Data[5])<<8 | int(r.Data[6]); n > MaxMessageSize {
					t.Fatalf("reply declares %d bytes", n)
				}
			}
		}
	})
}
