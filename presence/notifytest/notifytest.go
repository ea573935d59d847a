// Package notifytest runs a private D-Bus session bus and a desktop
// notification server written for tests, which answers every notification
// with a scripted action.
package notifytest

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// Path is the object path of the notification service.
const Path = dbus.ObjectPath("/org/freedesktop/Notifications")

// SessionBus starts a dbus-daemon for the test and returns its address. It
// skips the test when dbus-daemon is not installed, or fails it when
// TPM_U2F_REQUIRE_ALL is set (CI installs everything).
func SessionBus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		if os.Getenv("TPM_U2F_REQUIRE_ALL") != "" {
			t.Fatal("dbus-daemon not installed (required: TPM_U2F_REQUIRE_ALL is set)")
		}
		t.Skip("dbus-daemon not installed (apt-get install dbus-daemon)")
	}
	cmd := exec.Command(bin, "--session", "--nofork", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(addr)
}

// Connect opens a connection to the bus at addr, closed when the test ends.
func Connect(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	c, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Server is a notification server. It answers each notification with
// Answer ("allow", "deny"; "" never) after Delay.
type Server struct {
	Caps   []string
	Answer string
	Delay  time.Duration

	conn   *dbus.Conn
	mu     sync.Mutex
	next   uint32
	shown  []string
	closed []uint32
}

// Serve exports s on the bus at addr as org.freedesktop.Notifications.
func (s *Server) Serve(t *testing.T, addr string) {
	t.Helper()
	s.conn = Connect(t, addr)
	if err := s.conn.Export(s, Path, "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	reply, err := s.conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", reply, err)
	}
}

// GetCapabilities is the D-Bus method.
func (s *Server) GetCapabilities() ([]string, *dbus.Error) { return s.Caps, nil }

// Notify is the D-Bus method.
func (s *Server) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.mu.Lock()
	s.next++
	id := s.next
	s.shown = append(s.shown, summary+" | "+body)
	answer := s.Answer
	s.mu.Unlock()
	if answer != "" {
		go func() {
			time.Sleep(s.Delay)
			s.conn.Emit(Path, "org.freedesktop.Notifications.ActionInvoked", id, answer)
			s.conn.Emit(Path, "org.freedesktop.Notifications.NotificationClosed", id, uint32(2))
		}()
	}
	return id, nil
}

// SetAnswer changes the scripted answer for the notifications to come.
func (s *Server) SetAnswer(a string) {
	s.mu.Lock()
	s.Answer = a
	s.mu.Unlock()
}

// CloseNotification is the D-Bus method.
func (s *Server) CloseNotification(id uint32) *dbus.Error {
	s.mu.Lock()
	s.closed = append(s.closed, id)
	s.mu.Unlock()
	return nil
}

// Shown returns the notifications shown so far ("summary | body").
func (s *Server) Shown() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.shown...)
}

// Closed returns the ids closed through CloseNotification.
func (s *Server) Closed() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.closed...)
}

// LastID is the id of the latest notification (0 before any).
func (s *Server) LastID() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}
