package tpm

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultDevice is the kernel's TPM resource manager.
const DefaultDevice = "/dev/tpmrm0"

// Backend describes how a TPM was opened.
type Backend struct {
	// Spec is the string that selected the backend ("sim", "unix:/run/swtpm.sock", ...).
	Spec string
	// Bare is true when no resource manager stands between us and the TPM:
	// then the TPM has only 3 loaded object and 3 loaded session slots for
	// everyone, and we must flush what we load.
	Bare bool
	// Volatile is true when the TPM's state disappears with the process
	// (the embedded simulator): keys made there are lost at exit.
	Volatile bool
}

// Open opens the TPM named by spec:
//
//	""                 DefaultDevice
//	/dev/tpmrm0        a kernel TPM character device (/dev/tpm0 too, then Bare)
//	sim                the embedded Microsoft reference simulator (in memory)
//	unix:PATH          swtpm (or another emulator) speaking raw TPM commands on a unix socket
//	tcp:HOST:PORT      the same over TCP (loopback only)
func Open(spec string) (transport.TPMCloser, Backend, error) {
	if spec == "" {
		spec = DefaultDevice
	}
	b := Backend{Spec: spec}
	switch {
	case spec == "sim":
		sim, err := simulator.Get()
		if err != nil {
			return nil, b, fmt.Errorf("tpm: start simulator: %w", err)
		}
		b.Bare, b.Volatile = true, true
		return transport.FromReadWriteCloser(sim), b, nil
	case strings.HasPrefix(spec, "unix:"):
		b.Bare = true
		t, err := dialStream("unix", strings.TrimPrefix(spec, "unix:"))
		return t, b, err
	case strings.HasPrefix(spec, "tcp:"):
		addr := strings.TrimPrefix(spec, "tcp:")
		if err := requireLoopback(addr); err != nil {
			return nil, b, err
		}
		b.Bare = true
		t, err := dialStream("tcp", addr)
		return t, b, err
	case strings.HasPrefix(spec, "/"):
		b.Bare = !strings.Contains(spec, "tpmrm")
		t, err := linuxtpm.Open(spec)
		if err != nil {
			return nil, b, fmt.Errorf("tpm: open %s: %w", spec, err)
		}
		return t, b, nil
	}
	return nil, b, fmt.Errorf("tpm: unknown backend %q (want a device path, sim, unix:PATH or tcp:HOST:PORT)", spec)
}

func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("tpm: %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("tpm: refusing non-loopback TPM address %q: TPM traffic is not protected on the wire", addr)
}

// stream is a raw TPM command channel over a socket, as swtpm's
// "--server type=unixio" and "type=tcp" serve it: a command is written whole
// and the response is framed by the size in its 10-byte header. One
// connection is kept and redialled after an error, so a restarted swtpm is
// picked up by the next command.
type stream struct {
	network, addr string

	mu   sync.Mutex
	conn net.Conn
}

func dialStream(network, addr string) (*stream, error) {
	s := &stream{network: network, addr: addr}
	if _, err := s.connect(); err != nil {
		return nil, err
	}
	if err := startup(s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *stream) connect() (net.Conn, error) {
	if s.conn != nil {
		return s.conn, nil
	}
	c, err := net.DialTimeout(s.network, s.addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("tpm: connect %s:%s: %w", s.network, s.addr, err)
	}
	s.conn = c
	return c, nil
}

// maxResponse bounds what a confused or hostile emulator can make us allocate.
const maxResponse = 64 << 10

// Send implements transport.TPM.
func (s *stream) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.connect()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTransport, err)
	}
	rsp, err := s.roundTrip(c, cmd)
	if err != nil {
		c.Close()
		s.conn = nil
		return nil, fmt.Errorf("%w: %s:%s: %w", errTransport, s.network, s.addr, err)
	}
	return rsp, nil
}

func (s *stream) roundTrip(c net.Conn, cmd []byte) ([]byte, error) {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := c.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10)
	if _, err := readFull(c, hdr); err != nil {
		return nil, err
	}
	size := int(hdr[2])<<24 | int(hdr[3])<<16 | int(hdr[4])<<8 | int(hdr[5])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("bad response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := readFull(c, rsp[10:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Close implements io.Closer.
func (s *stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// startup sends TPM2_Startup(CLEAR), which an emulator started without
// "--flags startup-clear" needs; a TPM that is already up answers
// TPM_RC_INITIALIZE, which is fine.
func startup(t transport.TPM) error {
	_, err := tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(t)
	if err != nil && !errors.Is(err, tpm2.TPMRCInitialize) {
		return fmt.Errorf("tpm: startup: %w", err)
	}
	return nil
}
