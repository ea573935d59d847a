package presence

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/godbus/dbus/v5"
)

// WatchScreenLock calls onLock whenever the desktop's screen saver becomes
// active (org.freedesktop.ScreenSaver or org.gnome.ScreenSaver
// ActiveChanged(true) on the session bus), until ctx ends.
func WatchScreenLock(ctx context.Context, conn *dbus.Conn, onLock func(), log *slog.Logger) error {
	var matches [][]dbus.MatchOption
	for _, iface := range []string{"org.freedesktop.ScreenSaver", "org.gnome.ScreenSaver"} {
		m := []dbus.MatchOption{dbus.WithMatchInterface(iface), dbus.WithMatchMember("ActiveChanged")}
		if err := conn.AddMatchSignal(m...); err != nil {
			return fmt.Errorf("presence: watch screen lock: %w", err)
		}
		matches = append(matches, m)
	}
	signals := make(chan *dbus.Signal, 8)
	conn.Signal(signals)
	go func() {
		defer conn.RemoveSignal(signals)
		for _, m := range matches {
			defer conn.RemoveMatchSignal(m...)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-signals:
				if sig == nil || !strings.HasSuffix(sig.Name, ".ScreenSaver.ActiveChanged") || len(sig.Body) != 1 {
					continue
				}
				if active, _ := sig.Body[0].(bool); active {
					if log != nil {
						log.Info("screen locked")
					}
					onLock()
				}
			}
		}
	}()
	return nil
}

// WatchLogindLock calls onLock whenever logind asks one of this user's
// sessions to lock (org.freedesktop.login1.Session.Lock on the system
// bus: `loginctl lock-session`, and what idle managers of compositors
// without a ScreenSaver service send), until ctx ends. A Lock for another
// user's session is ignored.
func WatchLogindLock(ctx context.Context, system *dbus.Conn, onLock func(), log *slog.Logger) error {
	match := []dbus.MatchOption{dbus.WithMatchInterface("org.freedesktop.login1.Session"), dbus.WithMatchMember("Lock")}
	if err := system.AddMatchSignal(match...); err != nil {
		return fmt.Errorf("presence: watch logind: %w", err)
	}
	signals := make(chan *dbus.Signal, 8)
	system.Signal(signals)
	uid := uint32(os.Getuid())
	go func() {
		defer system.RemoveSignal(signals)
		defer system.RemoveMatchSignal(match...)
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-signals:
				if sig == nil || sig.Name != "org.freedesktop.login1.Session.Lock" {
					continue
				}
				if !sessionOf(system, sig.Sender, sig.Path, uid) {
					continue
				}
				if log != nil {
					log.Info("session locked (logind)")
				}
				onLock()
			}
		}
	}()
	return nil
}

// sessionOf reports whether the logind session at path, asked of the
// signal's sender, belongs to uid (its User property is (uid, path)).
func sessionOf(conn *dbus.Conn, sender string, path dbus.ObjectPath, uid uint32) bool {
	v, err := conn.Object(sender, path).GetProperty("org.freedesktop.login1.Session.User")
	if err != nil {
		return false
	}
	user, ok := v.Value().([]any)
	if !ok || len(user) != 2 {
		return false
	}
	id, ok := user[0].(uint32)
	return ok && id == uid
}
