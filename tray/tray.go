// Package tray owns the system-tray icon: a StatusNotifierItem (through
// fyne.io/systray, pure Go over D-Bus) that shows whether the key is
// unlocked, locked or needs attention (the replay store failing closed),
// and offers Lock, Unlock, Re-plug and Quit. It is optional: without a
// StatusNotifierWatcher on the session bus the daemon runs without it.
package tray

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"strings"
	"time"

	"fyne.io/systray"
	"github.com/godbus/dbus/v5"
)

// Controller is what the tray drives.
type Controller interface {
	Locked() bool
	Lock()
	Unlock() error
	Replug() error
	// Attention is a short reason the key needs the user ("" when fine).
	Attention() string
	// Question is a request waiting for the user's Allow or Deny in the
	// tray ("" when none): the fallback when the desktop's notifications
	// cannot show buttons. Answer answers it.
	Question() string
	Answer(allow bool)
	// Quit stops the daemon.
	Quit()
}

// WatcherName is the bus name of the StatusNotifierWatcher (the panel's
// tray host registers it).
const WatcherName = "org.kde.StatusNotifierWatcher"

// Available reports whether a tray host is there.
func Available(conn *dbus.Conn) bool {
	var has bool
	err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, WatcherName).Store(&has)
	return err == nil && has
}

// state is what the icon shows.
type state int

const (
	unlocked state = iota
	locked
	attention
)

func (s state) words(reason string) (title, tooltip string) {
	switch s {
	case locked:
		return "tpm-u2f: locked", "Security key locked: requests that need your presence are refused. Unlock from this menu."
	case attention:
		return "tpm-u2f: needs attention", "Security key: " + reason
	}
	return "tpm-u2f: unlocked", "Security key ready: each use asks you first."
}

// hostPrefixes begin the well-known names a StatusNotifierHost owns
// ("org.kde.StatusNotifierHost-PID" or "-PID-N": plasmashell, waybar,
// wf-panel; KDE's watcher registers only hosts with such a name).
var hostPrefixes = []string{"org.kde.StatusNotifierHost-", "org.freedesktop.StatusNotifierHost-"}

// isHost reports whether the unique bus name sender is a tray host now:
// the owner of the StatusNotifierWatcher (xfce4-panel, GNOME's
// AppIndicator extension and other panels are watcher and host in one:
// interop.TestXfcePanelMenu clicks through xfce4-panel), or of a host
// name. Real
// hosts call the menu from the connection that owns that name (Qt's
// QDBusConnection::sessionBus() and GIO's shared session connection are
// one per process), so no other connection is trusted, not even one of
// the same process. The watcher's own registry would add nothing: KDE's
// tells only whether some host registered (IsStatusNotifierHostRegistered,
// no list), and any client may call RegisterStatusNotifierHost.
func isHost(conn *dbus.Conn, sender string) bool {
	if sender == "" || !strings.HasPrefix(sender, ":") {
		return false
	}
	var names []string
	if err := conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		return false
	}
	for _, name := range names {
		host := name == WatcherName
		for _, p := range hostPrefixes {
			host = host || strings.HasPrefix(name, p)
		}
		if !host {
			continue
		}
		var owner string
		if err := conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, name).Store(&owner); err == nil && owner == sender {
			return true
		}
	}
	return false
}

// menuFilter counts a menu event only from the tray host: any process on
// the session bus can call the menu's Event("clicked"), as any can emit
// a notification's ActionInvoked (presence.DBus checks that sender too).
func menuFilter(log *slog.Logger) func(sender string, id int32, eventID string) bool {
	return func(sender string, id int32, eventID string) bool {
		conn, err := dbus.SessionBus()
		if err != nil {
			log.Warn("tray: cannot tell who sent a menu event; ignored", "sender", sender, "err", err)
			return false
		}
		if isHost(conn, sender) {
			return true
		}
		log.Warn("tray: ignored a menu event from a process that is not the tray host",
			"sender", sender, "item", id, "event", eventID)
		return false
	}
}

// Run shows the tray until ctx ends. It polls the controller once a second
// so the icon follows changes made elsewhere (the CLI, the screen lock).
// Menu clicks count only from the tray host (see isHost).
func Run(ctx context.Context, c Controller, log *slog.Logger) {
	systray.SetMenuEventFilter(menuFilter(log))
	start, end := systray.RunWithExternalLoop(func() { onReady(ctx, c, log) }, func() {})
	start()
	<-ctx.Done()
	end()
}

func onReady(ctx context.Context, c Controller, log *slog.Logger) {
	status := systray.AddMenuItem("", "")
	status.Disable()
	systray.AddSeparator()
	lockItem := systray.AddMenuItem("Lock", "Refuse every request that needs your presence")
	unlockItem := systray.AddMenuItem("Unlock", "Accept requests again (each still asks you)")
	replugItem := systray.AddMenuItem("Re-plug", "Power-cycle the key: re-create the device, forget volatile state")
	systray.AddSeparator()
	allowItem := systray.AddMenuItem("Allow", "Approve the request waiting for you")
	denyItem := systray.AddMenuItem("Deny", "Refuse the request waiting for you")
	allowItem.Hide()
	denyItem.Hide()
	systray.AddSeparator()
	quitItem := systray.AddMenuItem("Quit", "Stop the security key")

	shown := state(-1)
	var shownReason string
	refresh := func() {
		s, reason := unlocked, c.Attention()
		question := c.Question()
		switch {
		case question != "":
			s, reason = attention, question+": choose Allow or Deny in this menu"
		case reason != "":
			s = attention
		case c.Locked():
			s = locked
		}
		if s == shown && reason == shownReason {
			return
		}
		shown, shownReason = s, reason
		if question != "" {
			allowItem.SetTitle("Allow: " + question)
			allowItem.Show()
			denyItem.Show()
		} else {
			allowItem.Hide()
			denyItem.Hide()
		}
		title, tip := s.words(reason)
		systray.SetIcon(icon(s))
		systray.SetTitle(title)
		systray.SetTooltip(tip)
		status.SetTitle(title)
		if c.Locked() {
			lockItem.Disable()
			unlockItem.Enable()
		} else {
			lockItem.Enable()
			unlockItem.Disable()
		}
	}
	refresh()
	// systray hands a click over only if someone is receiving at that
	// instant (a non-blocking send), so each item gets a goroutine that
	// does nothing else, feeding a queue: no click is lost while the loop
	// below is busy redrawing.
	clicks := make(chan string, 16)
	for name, item := range map[string]*systray.MenuItem{"lock": lockItem, "unlock": unlockItem, "replug": replugItem, "quit": quitItem, "allow": allowItem, "deny": denyItem} {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-item.ClickedCh:
					clicks <- name
				}
			}
		}()
	}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		// systray may still be exporting its properties when onReady runs,
		// and a title set in that moment can be lost: the state is set
		// again on the first ticks, then only when it changes.
		reapply := 3
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if reapply > 0 {
					reapply--
					shown = -1
				}
			case name := <-clicks:
				log.Info("tray: " + name)
				var err error
				switch name {
				case "lock":
					c.Lock()
				case "unlock":
					err = c.Unlock()
				case "replug":
					err = c.Replug()
				case "allow":
					c.Answer(true)
				case "deny":
					c.Answer(false)
				case "quit":
					c.Quit()
					return
				}
				if err != nil {
					log.Warn("tray: "+name+" failed", "err", err)
				}
			}
			refresh()
		}
	}()
}

// icon draws the state as a 22×22 PNG: a key-shaped disc, green when
// unlocked, grey when locked, amber when something needs the user.
func icon(s state) []byte {
	fill := map[state]color.RGBA{
		unlocked:  {0x2e, 0x9d, 0x4a, 0xff},
		locked:    {0x80, 0x80, 0x80, 0xff},
		attention: {0xe8, 0x9a, 0x10, 0xff},
	}[s]
	img := image.NewRGBA(image.Rect(0, 0, 22, 22))
	for y := range 22 {
		for x := range 22 {
			dx, dy := x-7, y-11
			ring := dx*dx+dy*dy <= 36 && dx*dx+dy*dy >= 4 // the bow of the key
			shaft := y >= 10 && y <= 12 && x >= 12 && x <= 20
			bit := x >= 17 && x <= 18 && y >= 12 && y <= 15
			if ring || shaft || bit {
				img.Set(x, y, fill)
			}
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}
