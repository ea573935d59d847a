// Package control owns the daemon's control socket: how the tpm-u2f
// command line (and later the tray) asks the running daemon for its status
// and tells it to lock, unlock or re-plug, and sets or changes the PIN
// (which it receives only as CTAP's pinHash). The socket lives in
// $XDG_RUNTIME_DIR, is mode 0600, and every connection's peer credentials
// are checked: only the daemon's own user is served.
//
// The protocol is one JSON request and one JSON response per connection.
// A Server is safe for concurrent use; requests are handled one at a time.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	Command string `json:"command"` // status, lock, unlock, replug, credentials, delete, reset, pin-status, pin-set, pin-change
	// ID is the credential to delete (hex, or a unique hex prefix).
	ID string `json:"id,omitempty"`
	// PINHash is the current PIN's CTAP pinHash, LEFT(SHA-256(PIN), 16),
	// for pin-change, and for credentials and delete where a PIN is set (without it
	// the daemon asks through pinentry); NewPINHash the new PIN's, for pin-set and
	// pin-change. The PIN itself never crosses the socket. A pinHash is
	// still a secret: both are zeroed once used, and never logged nor put
	// into a Response.
	PINHash    []byte `json:"pin_hash,omitempty"`
	NewPINHash []byte `json:"new_pin_hash,omitempty"`
	// Config is the change a config request asks for; nil only reads
	// the settings (config.go).
	Config *ConfigChange `json:"config,omitempty"`
}

// PINHashSize is the length of a CTAP pinHash.
const PINHashSize = 16

// Zero overwrites the PIN hashes the request carries.
func (r *Request) Zero() {
	clear(r.PINHash)
	clear(r.NewPINHash)
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
	// PINSet and PINRetries answer pin-status; PINRetries also comes with
	// a wrong PIN (pin-change), and is nil when not known.
	PINSet     bool `json:"pin_set,omitempty"`
	PINRetries *int `json:"pin_retries,omitempty"`
	// Settings answers config.
	Settings *Settings `json:"settings,omitempty"`
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
	PINRetries      *int      `json:"pin_retries,omitempty"` // nil when no PIN is set
	TPMCommandStats string    `json:"tpm_commands"`
	// OperationStats is `run --stats`' per-operation accounting, one line
	// per operation; empty without --stats.
	OperationStats string `json:"operation_stats,omitempty"`
}

// Handler carries out commands in the daemon.
type Handler interface {
	Status() Status
	Lock()
	// Unlock asks what CTAP would: the PIN (pinentry) where one is set,
	// else the desktop's Allow; any process of the user can send it.
	Unlock() error
	// Replug power-cycles the key; while three wrong PINs in a row wait
	// for it, only after the desktop's Allow.
	Replug() error
	// Credentials lists the discoverable credentials, names included,
	// after what credentialManagement needs: the PIN (pinHash, or asked
	// through pinentry when nil) where one is set, else the desktop's
	// Allow. The server zeroes pinHash afterwards.
	Credentials(pinHash []byte) ([]Credential, error)
	// DeleteCredential deletes one, after the desktop's Allow and, where a
	// PIN is set, the PIN (pinHash, or through pinentry when nil), as
	// credentialManagement needs it.
	DeleteCredential(idPrefix string, pinHash []byte) error
	// Reset wipes every credential. The command line asks the user to
	// confirm before it sends this.
	Reset() error
	// PINStatus reports whether a PIN is set and the retries left.
	PINStatus() (set bool, retries int, err error)
	// SetPIN sets the first PIN (ErrPINSet when one exists). The hash is
	// the caller's: the server zeroes it afterwards.
	SetPIN(hash []byte) error
	// ChangePIN checks old and replaces the PIN with new: ErrWrongPIN with
	// the retries left, ErrPINBlocked, ErrPINNotSet.
	ChangePIN(old, new []byte) (retries int, err error)
}

// What a Handler's PIN methods return, and what PINError turns into the
// text the user sees.
var (
	ErrWrongPIN   = errors.New("wrong PIN")
	ErrPINBlocked = errors.New("PIN blocked: only a reset (tpm-u2f reset) helps")
	ErrPINNotSet  = errors.New("no PIN is set (set one with tpm-u2f pin set)")
	ErrPINSet     = errors.New("a PIN is already set (use tpm-u2f pin change)")
	// ErrPINAuthBlocked: three wrong PINs in a row; the key checks no PIN
	// until it is re-plugged, as CTAP's PIN_AUTH_BLOCKED.
	ErrPINAuthBlocked = errors.New("3 wrong PINs in a row: re-plug the key (tpm-u2f replug, allowed on the desktop) before the next try")
)

// PINError is the error the user sees for err from a PIN operation: a
// wrong PIN says how many retries are left ("wrong PIN; 5 retries
// left"). It is nil for nil.
func PINError(err error, retries int) error {
	if !errors.Is(err, ErrWrongPIN) || retries <= 0 {
		return err
	}
	if retries == 1 {
		return fmt.Errorf("%w; 1 retry left", ErrWrongPIN)
	}
	return fmt.Errorf("%w; %d retries left", ErrWrongPIN, retries)
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
	defer req.Zero()
	derr := readRequest(c, &req)
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
		if req.PINHash != nil && len(req.PINHash) != PINHashSize {
			return Response{Error: "malformed request: the PIN hash must be 16 bytes"}
		}
		creds, err := s.h.Credentials(req.PINHash)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Credentials: creds}
	case "delete":
		if req.PINHash != nil && len(req.PINHash) != PINHashSize {
			return Response{Error: "malformed request: the PIN hash must be 16 bytes"}
		}
		if err := s.h.DeleteCredential(req.ID, req.PINHash); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true}
	case "reset":
		if err := s.h.Reset(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true}
	case "pin-status":
		set, retries, err := s.h.PINStatus()
		if err != nil {
			return Response{Error: PINError(err, retries).Error(), PINSet: set}
		}
		rsp := Response{OK: true, PINSet: set}
		if set {
			rsp.PINRetries = &retries
		}
		return rsp
	case "pin-set":
		if len(req.NewPINHash) != PINHashSize {
			return Response{Error: "malformed request: the new PIN hash must be 16 bytes"}
		}
		if err := s.h.SetPIN(req.NewPINHash); err != nil {
			return Response{Error: err.Error(), PINSet: errors.Is(err, ErrPINSet)}
		}
		return Response{OK: true, PINSet: true}
	case "pin-change":
		if len(req.PINHash) != PINHashSize || len(req.NewPINHash) != PINHashSize {
			return Response{Error: "malformed request: the PIN hashes must be 16 bytes"}
		}
		retries, err := s.h.ChangePIN(req.PINHash, req.NewPINHash)
		if err != nil {
			rsp := Response{Error: PINError(err, retries).Error(), PINSet: true}
			if errors.Is(err, ErrWrongPIN) {
				rsp.PINRetries = &retries
			}
			return rsp
		}
		return Response{OK: true, PINSet: true}
	case "config":
		return s.config(req)
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

// maxRequest caps what a request may make us read.
const maxRequest = 4096

// readRequest reads one JSON request into a buffer of ours, which it
// zeroes afterwards (a request may carry PIN hashes; a json.Decoder would
// keep them in a buffer nobody clears). A request ends at a newline, as
// json.Encoder writes it, or as soon as it is a complete JSON value.
func readRequest(c net.Conn, req *Request) error {
	var buf [maxRequest]byte
	defer clear(buf[:])
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			n = i
			break
		}
		if json.Valid(buf[:n]) {
			break
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		if n == len(buf) {
			return errors.New("request too large")
		}
	}
	return json.Unmarshal(buf[:n], req)
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
	msg, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	line := append(msg, '\n')
	_, err = c.Write(line)
	clear(msg) // they may carry PIN hashes
	clear(line)
	if err != nil {
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
