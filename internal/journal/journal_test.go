package journal

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parse decodes one native-protocol datagram as journald does.
func parse(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			t.Fatalf("unterminated field: %q", b)
		}
		line := b[:nl]
		if eq := bytes.IndexByte(line, '='); eq >= 0 {
			out[string(line[:eq])] = string(line[eq+1:])
			b = b[nl+1:]
			continue
		}
		n := binary.LittleEndian.Uint64(b[nl+1:])
		out[string(line)] = string(b[nl+9 : nl+9+int(n)])
		b = b[nl+9+int(n)+1:]
	}
	return out
}

func TestFieldsReachTheJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socket")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h, err := New(path, "tpm-u2f", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	read := func() map[string]string {
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 65536)
		n, err := srv.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		return parse(t, b[:n])
	}
	read() // the connection check
	log := slog.New(h).With("component", "token")
	log.Info("ctap2 registration", "rp", "github.com", "operation", "register", "outcome", "ok", "message", "not the message", "multi", "two\nlines")
	got := read()
	want := map[string]string{
		"MESSAGE": "ctap2 registration", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "tpm-u2f",
		"COMPONENT": "token", "RP": "github.com", "OPERATION": "register", "OUTCOME": "ok",
		"TPM_U2F_MESSAGE": "not the message", "MULTI": "two\nlines",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %q)", k, got[k], v, got)
		}
	}
	log.WithGroup("req").Warn("refused", "status", "0x2e", slog.Group("tpm", "rc", 1))
	got = read()
	if got["PRIORITY"] != "4" || got["REQ_STATUS"] != "0x2e" || got["REQ_TPM_RC"] != "1" {
		t.Errorf("group fields: %q", got)
	}
	log.Debug("not sent")
	srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := srv.Read(make([]byte, 10)); err == nil {
		t.Errorf("a debug record below the level was sent (%d bytes)", n)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"rp": "RP", "rp-id": "RP_ID", "_secret": "SECRET", "9lives": "LIVES", "x.y": "X_Y", "": "", strings.Repeat("a", 70): strings.Repeat("A", 64), "priority": "TPM_U2F_PRIORITY"} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNoJournal(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "absent"), "x", slog.LevelInfo); err == nil {
		t.Fatal("New succeeded without a journal socket")
	}
}

// A journald that does not read never stops the caller: once its queue
// is full, a record is dropped (an error) instead of waited for.
func TestStuckJournalDropsRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socket")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h, err := New(path, "tpm-u2f", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range 100000 {
			if err := h.Handle(t.Context(), slog.NewRecord(time.Now(), slog.LevelInfo, strings.Repeat("x", 1000), 0)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Skip("the socket queue never filled")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("logging blocked on a journal that does not read")
	}
}
