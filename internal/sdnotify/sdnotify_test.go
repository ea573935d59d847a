package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	Status("waiting for /dev/tpmrm0:\npermission denied")
	if got := read(t, c); got != "STATUS=waiting for /dev/tpmrm0: permission denied" {
		t.Errorf("status: %q", got)
	}
	Ready("ready")
	if got := read(t, c); got != "READY=1\nSTATUS=ready" {
		t.Errorf("ready: %q", got)
	}
}

func TestAbstractSocket(t *testing.T) {
	c := listen(t, "\x00tpm-u2f-sdnotify-test-"+t.Name())
	t.Setenv("NOTIFY_SOCKET", "@tpm-u2f-sdnotify-test-"+t.Name())
	if ok, err := Notify("READY=1"); !ok || err != nil {
		t.Fatalf("Notify: %v %v", ok, err)
	}
	if got := read(t, c); got != "READY=1" {
		t.Errorf("%q", got)
	}
}

func TestNoManager(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if ok, err := Notify("READY=1"); ok || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v %v", ok, err)
	}
}
