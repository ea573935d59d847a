package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// The desktop notification interface (freedesktop.org Desktop
// Notifications Specification 1.2).
const (
	notifyName  = "org.freedesktop.Notifications"
	notifyPath  = dbus.ObjectPath("/org/freedesktop/Notifications")
	notifyIface = "org.freedesktop.Notifications"
)

// ErrNoActions: the notification server cannot show buttons, so there is
// no way to approve; requests are refused rather than approved unasked.
var ErrNoActions = errors.New("presence: the notification server cannot show Allow/Deny buttons")

// DBus asks the user through a desktop notification with Allow and Deny
// buttons. Only one prompt is shown at a time; a second request waits for
// the first (or for its own context). Answers count only when they come
// from the bus name that owns org.freedesktop.Notifications and name our
// notification: any other process on the session bus can send signals
// that look like a click.
type DBus struct {
	conn    *dbus.Conn
	log     *slog.Logger
	timeout time.Duration
	slot    chan struct{}
	// fallback asks when no notification server can show Allow/Deny,
	// while fallbackShown says someone can see it.
	fallback      Prompter
	fallbackShown func() bool
}

// SetFallback makes d ask p (the tray's Allow/Deny) whenever the
// notification server is missing or cannot show buttons and shown
// reports that p can be seen (a tray host is there: panels start, stop
// and restart during a session), instead of refusing. Call before the
// first Confirm.
func (d *DBus) SetFallback(p Prompter, shown func() bool) {
	d.fallback, d.fallbackShown = p, shown
}

// NewDBus returns a prompter on conn (usually dbus.ConnectSessionBus()).
// timeout bounds each prompt (default 30 s).
func NewDBus(conn *dbus.Conn, timeout time.Duration, log *slog.Logger) *DBus {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DBus{conn: conn, log: log, timeout: timeout, slot: make(chan struct{}, 1)}
}

// Check reports whether a notification server is there and can show
// actions, for a log line at start.
func (d *DBus) Check() error {
	var caps []string
	if err := d.conn.Object(notifyName, notifyPath).Call(notifyIface+".GetCapabilities", 0).Store(&caps); err != nil {
		return fmt.Errorf("presence: no desktop notification server on the session bus: %w", err)
	}
	if !slices.Contains(caps, "actions") {
		return ErrNoActions
	}
	return nil
}

// Confirm implements Prompter.
func (d *DBus) Confirm(ctx context.Context, req Request) error {
	select {
	case d.slot <- struct{}{}:
		defer func() { <-d.slot }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := d.Check(); err != nil {
		if d.fallback != nil && d.fallbackShown() {
			d.log.Warn("presence: the notification server cannot ask; asking through the tray instead", "operation", req.Operation, "rp", req.RelyingParty, "reason", err)
			return d.fallback.Confirm(ctx, req)
		}
		d.log.Warn("presence: cannot ask the user; refusing", "operation", req.Operation, "rp", req.RelyingParty, "reason", err)
		return err
	}
	var owner string
	if err := d.conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, notifyName).Store(&owner); err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	// No sender in the match rule: a spoofed signal must reach us so that
	// it can be logged; it is filtered below.
	match := []dbus.MatchOption{dbus.WithMatchInterface(notifyIface)}
	if err := d.conn.AddMatchSignal(match...); err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	defer d.conn.RemoveMatchSignal(match...)
	signals := make(chan *dbus.Signal, 16)
	d.conn.Signal(signals)
	defer d.conn.RemoveSignal(signals)

	obj := d.conn.Object(notifyName, notifyPath)
	var id uint32
	err := obj.Call(notifyIface+".Notify", 0,
		"tpm-u2f", uint32(0), "security-high",
		"Security key: "+req.Operation,
		fmt.Sprintf("%s asks to %s with your security key.", req.RelyingParty, req.Operation),
		[]string{"allow", "Allow", "deny", "Deny"},
		map[string]dbus.Variant{"urgency": dbus.MakeVariant(byte(2)), "resident": dbus.MakeVariant(true)},
		int32(d.timeout/time.Millisecond),
	).Store(&id)
	if err != nil {
		return fmt.Errorf("presence: Notify: %w", err)
	}
	closeIt := func() { obj.Call(notifyIface+".CloseNotification", 0, id) }
	timer := time.NewTimer(d.timeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			closeIt()
			return ctx.Err()
		case <-timer.C:
			closeIt()
			return ErrTimeout
		case sig := <-signals:
			switch v, detail := judge(sig, id, owner); v {
			case verdictAllow:
				d.log.Info("presence: approved by the user", "operation", req.Operation, "rp", req.RelyingParty)
				closeIt()
				return nil
			case verdictDeny:
				// Some servers (mako) keep a notification up after its
				// action; one already closed makes this a no-op.
				closeIt()
				return ErrDenied
			case verdictTimeout:
				return ErrTimeout
			case verdictSpoofed:
				d.log.Warn("presence: ignored a notification signal from a process that is not the notification server",
					"sender", sig.Sender, "server", owner, "signal", detail)
			case verdictMalformed:
				d.log.Warn("presence: malformed notification signal ignored", "sender", sig.Sender, "signal", detail)
			case verdictWaiting:
				d.log.Info("presence: notification clicked without choosing; still waiting", "action", detail)
			}
		}
	}
}

// verdict is what one signal on the bus means for our prompt.
type verdict int

const (
	verdictIgnore    verdict = iota // not about our notification
	verdictAllow                    // Allow clicked
	verdictDeny                     // Deny clicked, or closed without Allow
	verdictTimeout                  // the notification expired
	verdictSpoofed                  // about our notification, but not from the server
	verdictMalformed                // a Notifications signal with the wrong body
	verdictWaiting                  // clicked without choosing an action
)

// judge decides what sig means for notification id shown by the server
// whose unique bus name is owner. Only the server that owns
// org.freedesktop.Notifications speaks for the user (any process on the
// session bus can emit a signal that looks like a click).
func judge(sig *dbus.Signal, id uint32, owner string) (verdict, string) {
	if sig == nil {
		return verdictIgnore, ""
	}
	name, ok := strings.CutPrefix(sig.Name, notifyIface+".")
	if !ok || (name != "ActionInvoked" && name != "NotificationClosed") {
		return verdictIgnore, ""
	}
	if len(sig.Body) != 2 {
		return verdictMalformed, name
	}
	sigID, ok := sig.Body[0].(uint32)
	if !ok || sigID != id {
		return verdictIgnore, "" // another notification of the desktop's
	}
	if sig.Sender != owner {
		return verdictSpoofed, name
	}
	if name == "ActionInvoked" {
		switch key, _ := sig.Body[1].(string); key {
		case "allow":
			return verdictAllow, key
		case "deny":
			return verdictDeny, key
		default:
			return verdictWaiting, key
		}
	}
	if reason, _ := sig.Body[1].(uint32); reason == 1 { // expired
		return verdictTimeout, name
	}
	return verdictDeny, name // dismissed or closed without Allow
}
