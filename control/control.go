// Package control owns the daemon's control socket: how the tpm-u2f
// command line (and later the tray) asks the running daemon for its status
// and tells it to lock, unlock or re-plug. The socket lives in
// $XDG_RUNTIME_DIR, is mode 0600, and every connection's peer credentials
// are checked: only the daemon's own user is served.
//
// The protocol is one JSON request and one JSON response per connection.
// A Server is safe for concurrent use; requests are handled one at a time.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Request is one command.
type Request struct {
	Command string `json:"command"` // status, lock, unlock, replug, credentials, delete, reset
	// ID is the credential to delete (hex, or a unique hex prefix).
	ID string `json:"id,omitempty"`
}

// Credential describes a discoverable credential for `tpm-u2f
// credentials list`. Names are shown only to the daemon's own user.
type Credential struct {
	ID          string    `json:"id"` // short hex name: a hash of the credential ID
	RPID        string    `json:"rp_id"`
	UserName    string    `json:"user_name,omitempty"`
	DisplayName string    `json:"display_name,omitempty"`
	CredProtect int       `json:"cred_protect,omitempty"`
	Created     time.Time `json:"created"`
}

// Response answers a Request.
type Response struct {
	OK          bool         `json:"ok"`
	Error       string       `json:"error,omitempty"`
	Status      *Status      `json:"status,omitempty"`
	Credentials []Credential `json:"credentials,omitempty"`
}

// Status is what `tpm-u2f status` shows.
type Status struct {
	Version         string    `json:"version"`
	TPM             string    `json:"tpm"`
	Transport       string    `json:"transport"`
	DevicePresent   bool      `json:"device_present"`
	Locked          bool      `json:"locked"`
	Presence        string    `json:"presence"`
	NextCounter     uint64    `json:"next_counter"`
	ReplayHealthy   bool      `json:"replay_store_healthy"`
	ReplayUntil     time.Time `json:"replay_store_refusing_until,omitzero"`
	ReplayEntries   int       `json:"replay_store_entries"`
	PINRetries      *int      `json:"pin_retries,omitempty"` // nil until PIN support exists
	TPMCommandStats string    `json:"tpm_commands"`
}

// Handler carries out commands in the daemon.
type Handler interface {
	Status() Status
	Lock()
	Unlock() error
	Replug() error
	Credentials() ([]Credential, error)
	DeleteCredential(idPrefix string) error
	// Reset wipes every credential. The command line asks the user to
	// confirm before it sends this.
	Reset() error
}

// DefaultPath is $XDG_RUNTIME_DIR/tpm-u2f/control.sock.
func DefaultPath() (string, error) {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		return "", errors.New("control: XDG_RUNTIME_DIR is not set (run inside your login session, or pass --control)")
	}
	return filepath.Join(dir, "tpm-u2f", "control.sock"), nil
}

// Server serves the control socket.
type Server struct {
	ln  *net.UnixListener
	h   Handler
	log *slog.Logger
	uid int
	mu  sync.Mutex
}

// Listen creates the socket at path (its directory 0700, the socket 0600).
// A stale socket left by a crashed daemon is replaced; a live one is an
// error.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("control: %s is in use by a running daemon", path)
	}
	os.Remove(path)
	// The umask makes the socket 0600 from its creation, with no window in
	// which another user could connect.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	return &Server{ln: ln, h: h, log: log, uid: os.Getuid()}, nil
}

// Serve answers connections until ctx ends; it then removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	go func() { <-ctx.Done(); s.ln.Close() }()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go s.serve(c)
	}
}

func (s *Server) serve(c *net.UnixConn) {
	defer c.Close()
	// Long enough for a destructive command's desktop confirmation.
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	uid, err := peerUID(c)
	var req Request
	derr := json.NewDecoder(&limited{c, 4096}).Decode(&req)
	if err != nil || uid != s.uid {
		// Refused after reading the request, so that the client gets this
		// answer rather than a broken pipe; nothing in it was acted on.
		s.log.Warn("control: refused a connection from another user", "uid", uid, "err", err)
		json.NewEncoder(c).Encode(Response{Error: "permission denied"})
		return
	}
	if err := derr; err != nil {
		s.log.Info("control: malformed request", "err", err)
		json.NewEncoder(c).Encode(Response{Error: "malformed request"})
		return
	}
	json.NewEncoder(c).Encode(s.handle(req))
}

func (s *Server) handle(req Request) Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Command {
	case "status":
		st := s.h.Status()
		return Response{OK: true, Status: &st}
	case "lock":
		s.h.Lock()
		return Response{OK: true}
	case "unlock":
		if err := s.h.Unlock(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true}
	case "replug":
		if err := s.h.Replug(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true}
	case "credentials":
		creds, err := s.h.Credentials()
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Credentials: creds}
	case "delete":
		if err := s.h.DeleteCredential(req.ID); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true}
	case "reset":
		if err := s.h.Reset(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true}
	}
	s.log.Info("control: unknown command", "command", req.Command)
	return Response{Error: fmt.Sprintf("unknown command %q", req.Command)}
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if serr != nil {
		return -1, serr
	}
	return int(cred.Uid), nil
}

// limited caps what a request may make us read.
type limited struct {
	c *net.UnixConn
	n int
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request too large")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= n
	return n, err
}

// ErrNoDaemon means nothing listens on the control socket.
var ErrNoDaemon = errors.New("control: the tpm-u2f daemon is not running (no control socket)")

// Call sends one request to the daemon at path.
func Call(path string, req Request) (Response, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrNoDaemon, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, err
	}
	var rsp Response
	if err := json.NewDecoder(c).Decode(&rsp); err != nil {
		return Response{}, fmt.Errorf("control: reading the daemon's answer: %w", err)
	}
	if !rsp.OK {
		return rsp, errors.New(rsp.Error)
	}
	return rsp, nil
}
