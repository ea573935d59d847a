// Package sdnotify tells systemd how a Type=notify service is doing
// (sd_notify(3)): READY=1 once it serves, STATUS= what it is doing or
// waiting for, STOPPING=1 when it stops. Outside systemd (no
// NOTIFY_SOCKET) every call does nothing.
package sdnotify

import (
	"net"
	"os"
	"strings"
)

// Notify sends state (newline-separated VAR=value assignments) to the
// service manager. It reports whether a manager was there to tell.
func Notify(state string) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:] // an abstract socket (sd_notify(3))
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err == nil, err
}

// Status sets the one-line status systemctl status shows.
func Status(line string) { Notify("STATUS=" + strings.ReplaceAll(line, "\n", " ")) }

// Ready says the service serves, with its status line.
func Ready(line string) { Notify("READY=1\nSTATUS=" + strings.ReplaceAll(line, "\n", " ")) }

// Stopping says the service is shutting down.
func Stopping() { Notify("STOPPING=1") }
