package interop

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// The daemon as a systemd Type=notify service started at login before the
// TPM can be opened (here: swtpm not running yet, as /dev/tpmrm0 before
// udev or the group membership): it says what it waits for in its status
// line instead of failing, and sends READY=1 only once the TPM answered
// and the HID device (here UDP) is up.
func TestServiceWaitsForTheTPMThenNotifiesReady(t *testing.T) {
	binary(t) // built before the clock below starts
	sw := tpmtest.StartSWTPM(t)
	sw.Stop()
	sock := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	started := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		started <- sw.StartErr()
	}()
	addr, stop, _, _ := startDaemonEnv(t, t.TempDir(), []string{"NOTIFY_SOCKET=" + sock}, "--tpm", sw.Spec)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	var msgs []string
	b := make([]byte, 4096)
	for {
		notify.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := notify.Read(b)
		if err != nil {
			break
		}
		msgs = append(msgs, string(b[:n]))
		if strings.HasPrefix(msgs[len(msgs)-1], "READY=1") {
			break
		}
	}
	t.Logf("notifications: %q", msgs)
	waited, ready := false, -1
	for i, m := range msgs {
		if strings.Contains(m, "STATUS=waiting for the TPM") {
			waited = true
		}
		if strings.HasPrefix(m, "READY=1") {
			ready = i
		}
	}
	if !waited || ready < 0 {
		t.Fatalf("want a waiting status, then READY=1: %q", msgs)
	}
	// Ready means ready: the key answers at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if echo, err := dial(t, ctx, addr).Call(ctx, ctaphid.CmdPing, []byte("ready?")); err != nil || string(echo) != "ready?" {
		t.Errorf("PING right after READY=1: %q, %v", echo, err)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	notify.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := notify.Read(b); err != nil || string(b[:n]) != "STOPPING=1" {
		t.Errorf("after SIGTERM: %q, %v; want STOPPING=1", b[:max(n, 0)], err)
	}
}
