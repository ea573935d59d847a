package ctaphid

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
)

// ListenUDP serves CTAPHID over UDP on a loopback address: each datagram
// is one 64-byte report, and a reply goes to the address its request came
// from. It exists for development and test clients. Any local user can
// send to a loopback port, so it refuses any other address and warns.
func ListenUDP(addr string, log *slog.Logger) (Transport, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("ctaphid: udp %q: %w", addr, err)
	}
	if ua.IP == nil || !ua.IP.IsLoopback() {
		return nil, fmt.Errorf("ctaphid: udp %q: refusing a non-loopback address; the UDP transport lets anyone who can reach it use the key", addr)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("ctaphid: udp: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Warn("CTAPHID over UDP is on: any local user can use this key through it; do not use it on a shared machine", "addr", c.LocalAddr().String())
	return &udpTransport{c: c, log: log}, nil
}

// DialUDP is the host side of ListenUDP.
func DialUDP(addr string) (Transport, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, err
	}
	return &udpTransport{c: c, dialed: true, log: slog.New(slog.DiscardHandler)}, nil
}

type udpTransport struct {
	c      *net.UDPConn
	dialed bool
	log    *slog.Logger
}

// LocalAddr is the address the transport listens on.
func (u *udpTransport) LocalAddr() net.Addr { return u.c.LocalAddr() }

func (u *udpTransport) ReadReport() (Report, error) {
	buf := make([]byte, ReportSize+1)
	for {
		n, from, err := u.c.ReadFromUDP(buf)
		if err != nil {
			return Report{}, err
		}
		if n != ReportSize {
			u.log.Debug("ctaphid: udp: dropped a datagram that is not one report", "bytes", n)
			continue
		}
		var r Report
		copy(r.Data[:], buf)
		if !u.dialed {
			r.Peer = from
		}
		return r, nil
	}
}

func (u *udpTransport) WriteReport(r Report) error {
	if u.dialed {
		_, err := u.c.Write(r.Data[:])
		return err
	}
	to, ok := r.Peer.(*net.UDPAddr)
	if !ok {
		return errors.New("ctaphid: udp: reply without a peer address")
	}
	_, err := u.c.WriteToUDP(r.Data[:], to)
	return err
}

func (u *udpTransport) Close() error { return u.c.Close() }
