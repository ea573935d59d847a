package presence_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The screen saver's ActiveChanged(true) on the session bus locks the
// key; ActiveChanged(false) and other signals do not.
func TestWatchScreenLock(t *testing.T) {
	addr := notifytest.SessionBus(t)
	var locks atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := presence.WatchScreenLock(ctx, notifytest.Connect(t, addr), func() { locks.Add(1) }, nil); err != nil {
		t.Fatal(err)
	}
	desktop := notifytest.Connect(t, addr)
	for _, iface := range []string{"org.freedesktop.ScreenSaver", "org.gnome.ScreenSaver"} {
		desktop.Emit("/org/freedesktop/ScreenSaver", iface+".ActiveChanged", false)
		desktop.Emit("/org/freedesktop/ScreenSaver", iface+".ActiveChanged", true)
	}
	waitFor(t, "two locks", func() bool { return locks.Load() == 2 })
	time.Sleep(100 * time.Millisecond)
	if n := locks.Load(); n != 2 {
		t.Fatalf("%d locks, want 2", n)
	}
}

// fakeSession is a logind session object: its User property says whose.
func exportSession(t *testing.T, conn *dbus.Conn, path dbus.ObjectPath, uid uint32) {
	t.Helper()
	_, err := prop.Export(conn, path, prop.Map{"org.freedesktop.login1.Session": {
		// (uo), as logind has it.
		"User": {Value: struct {
			UID  uint32
			Path dbus.ObjectPath
		}{uid, "/org/freedesktop/login1/user/x"}, Emit: prop.EmitFalse},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// logind's Session.Lock for one of our sessions locks the key; for
// another user's session it does not. A private bus stands in for the
// system bus, and this test for logind.
func TestWatchLogindLock(t *testing.T) {
	addr := notifytest.SessionBus(t)
	logind := notifytest.Connect(t, addr)
	mine, theirs := dbus.ObjectPath("/org/freedesktop/login1/session/_31"), dbus.ObjectPath("/org/freedesktop/login1/session/_32")
	exportSession(t, logind, mine, uint32(os.Getuid()))
	exportSession(t, logind, theirs, uint32(os.Getuid())+1)
	var locks atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := presence.WatchLogindLock(ctx, notifytest.Connect(t, addr), func() { locks.Add(1) }, nil); err != nil {
		t.Fatal(err)
	}
	logind.Emit(theirs, "org.freedesktop.login1.Session.Lock")
	logind.Emit(mine, "org.freedesktop.login1.Session.Unlock")
	logind.Emit(mine, "org.freedesktop.login1.Session.Lock")
	waitFor(t, "a lock", func() bool { return locks.Load() == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := locks.Load(); n != 1 {
		t.Fatalf("%d locks, want 1 (another user's session must not lock us)", n)
	}
}
