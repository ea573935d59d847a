// Package journal is a log/slog handler that writes to systemd-journald's
// native protocol (systemd.journal-fields(7), the "Native Journal
// Protocol"), so every attribute of a record becomes a field of its own
// (RP=, OPERATION=, STATUS=...) that `journalctl -o verbose` shows and
// `journalctl RP=github.com` selects. It carries what the caller logs and
// nothing else: tpm-u2f never logs a secret.
package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultSocket is journald's native socket.
const DefaultSocket = "/run/systemd/journal/socket"

// writeTimeout bounds how long one record may wait for journald.
const writeTimeout = 200 * time.Millisecond

// Handler sends each record as one datagram to journald.
type Handler struct {
	conn   *net.UnixConn
	addr   *net.UnixAddr
	level  slog.Leveler
	ident  string
	prefix string // group prefix for attribute names
	attrs  []slog.Attr
	mu     *sync.Mutex
}

// Under reports whether stderr goes to the journal (systemd sets
// JOURNAL_STREAM for a service's stdout/stderr, sd_journal_stream_fd(3)).
func Under() bool { return os.Getenv("JOURNAL_STREAM") != "" }

// New returns a handler writing to the journald socket at path.
func New(path, ident string, level slog.Leveler) (*Handler, error) {
	addr := &net.UnixAddr{Name: path, Net: "unixgram"}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	h := &Handler{conn: c, addr: addr, level: level, ident: ident, mu: new(sync.Mutex)}
	// A record nobody receives is lost silently: check the socket once.
	if _, err := c.Write(h.encode(slog.NewRecord(time.Now(), slog.LevelDebug, "journal: connected", 0))); err != nil {
		c.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	return h, nil
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	b := h.encode(r)
	h.mu.Lock()
	defer h.mu.Unlock()
	// A journald that does not read (stuck, or its queue full) must not
	// stop the key: a record is dropped after a while, never waited for.
	h.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := h.conn.Write(b)
	return err
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	for _, a := range as {
		a.Key = h.prefix + a.Key
		h2.attrs = append(append([]slog.Attr(nil), h2.attrs...), a)
	}
	return &h2
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	h2 := *h
	h2.prefix = h.prefix + name + "_"
	return &h2
}

// priority maps slog levels to syslog priorities.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

func (h *Handler) encode(r slog.Record) []byte {
	var b bytes.Buffer
	field(&b, "MESSAGE", r.Message)
	field(&b, "PRIORITY", fmt.Sprint(priority(r.Level)))
	field(&b, "SYSLOG_IDENTIFIER", h.ident)
	for _, a := range h.attrs {
		attr(&b, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		attr(&b, h.prefix, a)
		return true
	})
	return b.Bytes()
}

func attr(b *bytes.Buffer, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			attr(b, prefix+a.Key+"_", g)
		}
		return
	}
	name := fieldName(prefix + a.Key)
	if name == "" {
		return
	}
	field(b, name, v.String())
}

// fieldName turns an attribute key into a journal field name: upper case
// ASCII letters, digits and underscores, not starting with an underscore
// (those are the journal's own) or a digit, at most 64 bytes.
func fieldName(key string) string {
	var n strings.Builder
	for _, c := range strings.ToUpper(key) {
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9' && n.Len() > 0, c == '_' && n.Len() > 0:
			n.WriteRune(c)
		case n.Len() > 0:
			n.WriteByte('_')
		}
	}
	s := n.String()
	if len(s) > 64 {
		s = s[:64]
	}
	switch s {
	case "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER":
		return "TPM_U2F_" + s // never overwrite the record's own
	}
	return s
}

// field writes NAME=value, or the binary form for a value with a newline.
func field(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	if !strings.Contains(value, "\n") {
		b.WriteByte('=')
		b.WriteString(value)
		b.WriteByte('\n')
		return
	}
	b.WriteByte('\n')
	binary.Write(b, binary.LittleEndian, uint64(len(value)))
	b.WriteString(value)
	b.WriteByte('\n')
}
