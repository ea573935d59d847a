package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
)

// Under systemd (JOURNAL_STREAM set) the daemon logs to journald's native
// socket, each record's attributes as fields: the RP, the operation and
// the outcome of a request can be selected with journalctl.
func TestJournalGetsStructuredFields(t *testing.T) {
	dir := t.TempDir()
	journalSock, notifySock := filepath.Join(dir, "journal"), filepath.Join(dir, "notify")
	journal, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: journalSock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer journal.Close()
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifySock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	addr := freeUDPPort(t)
	cmd := exec.Command(binary(t), "run", "--transport", "udp:"+addr, "--presence", "always", "--state", filepath.Join(dir, "state"), "--tpm", "sim")
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM=8:1234", "TPM_U2F_JOURNAL_SOCKET="+journalSock, "NOTIFY_SOCKET="+notifySock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	b := make([]byte, 65536)
	for {
		notify.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := notify.Read(b)
		if err != nil {
			t.Fatalf("no READY=1: %v; stderr: %s", err, stderr.String())
		}
		if strings.HasPrefix(string(b[:n]), "READY=1") {
			break
		}
	}
	records := make(chan string, 1024)
	go func() {
		b := make([]byte, 65536)
		for {
			n, err := journal.Read(b)
			if err != nil {
				close(records)
				return
			}
			records <- string(b[:n])
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := u2fhost.Register(ctx, dial(t, ctx, addr), sha256.Sum256([]byte("c")), sha256.Sum256([]byte("https://github.com/u2f/trusted_facets"))); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for found := false; !found; {
		select {
		case rec, ok := <-records:
			if !ok {
				t.Fatal("journal socket closed")
			}
			seen = append(seen, rec)
			found = strings.Contains(rec, "MESSAGE=u2f registration\n") && strings.Contains(rec, "\nRP=github.com\n") && strings.Contains(rec, "SYSLOG_IDENTIFIER=tpm-u2f\n")
		case <-time.After(5 * time.Second):
			t.Fatalf("no record of the registration with its RP; got %d records: %q", len(seen), seen)
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("with the journal, stderr should stay empty (systemd would log it twice): %q", stderr.String())
	}
}
