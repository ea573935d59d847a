// Command notifyd is a desktop notification server for the QEMU guest
// suite: it owns org.freedesktop.Notifications on the session bus, logs
// every notification it is asked to show, and clicks Allow on each after a
// short delay, as a user would.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/godbus/dbus/v5"
)

const path = dbus.ObjectPath("/org/freedesktop/Notifications")

type server struct {
	conn *dbus.Conn
	next uint32
}

func (s *server) GetCapabilities() ([]string, *dbus.Error) { return []string{"actions", "body"}, nil }

func (s *server) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.next++
	id := s.next
	fmt.Printf("notifyd: shown %d: %s | %s\n", id, summary, body)
	go func() {
		time.Sleep(200 * time.Millisecond)
		s.conn.Emit(path, "org.freedesktop.Notifications.ActionInvoked", id, "allow")
		fmt.Printf("notifyd: clicked Allow on %d\n", id)
	}()
	return id, nil
}

func (s *server) CloseNotification(id uint32) *dbus.Error { return nil }

func main() {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		fmt.Fprintln(os.Stderr, "notifyd:", err)
		os.Exit(1)
	}
	s := &server{conn: conn}
	if err := conn.Export(s, path, "org.freedesktop.Notifications"); err != nil {
		fmt.Fprintln(os.Stderr, "notifyd:", err)
		os.Exit(1)
	}
	if reply, err := conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		fmt.Fprintln(os.Stderr, "notifyd: cannot own org.freedesktop.Notifications:", err)
		os.Exit(1)
	}
	fmt.Println("notifyd: ready")
	select {}
}
