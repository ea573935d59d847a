package tray

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/tray/traytest"
)

type fakeKey struct {
	mu        sync.Mutex
	locked    bool
	replugs   int
	attention string
	quit      bool
	ask       *presence.Manual
}

func (f *fakeKey) Locked() bool      { f.mu.Lock(); defer f.mu.Unlock(); return f.locked }
func (f *fakeKey) Lock()             { f.mu.Lock(); f.locked = true; f.mu.Unlock() }
func (f *fakeKey) Unlock() error     { f.mu.Lock(); f.locked = false; f.mu.Unlock(); return nil }
func (f *fakeKey) Replug() error     { f.mu.Lock(); f.replugs++; f.mu.Unlock(); return nil }
func (f *fakeKey) Attention() string { f.mu.Lock(); defer f.mu.Unlock(); return f.attention }
func (f *fakeKey) Quit()             { f.mu.Lock(); f.quit = true; f.mu.Unlock() }
func (f *fakeKey) Answer(allow bool) { f.ask.Answer(allow) }
func (f *fakeKey) Question() string {
	if r, ok := f.ask.Pending(); ok {
		return r.RelyingParty + " asks to " + r.Operation
	}
	return ""
}

// TestTrayOnARealSessionBus: the item registers with the watcher, shows
// the key's state, and its menu locks and unlocks the key.
func TestTrayOnARealSessionBus(t *testing.T) {
	addr := notifytest.SessionBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", addr)
	host := notifytest.Connect(t, addr)
	w := traytest.ServeWatcher(t, host)
	if !Available(host) {
		t.Fatal("Available = false with a watcher on the bus")
	}

	key := &fakeKey{ask: presence.NewManual(10 * time.Second)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	logs := &syncBuffer{}
	go func() { defer close(done); Run(ctx, key, slog.New(slog.NewTextHandler(logs, nil))) }()
	defer func() { cancel(); <-done }()

	var sender string
	eventually(t, "item registered", func() bool {
		sender, _ = w.Registered()
		return sender != ""
	})
	item := host.Object(sender, "/StatusNotifierItem")
	title := func() string {
		v, err := item.GetProperty("org.kde.StatusNotifierItem.Title")
		if err != nil {
			return ""
		}
		s, _ := v.Value().(string)
		return s
	}
	eventually(t, "title unlocked", func() bool { return title() == "tpm-u2f: unlocked" })

	// Find the menu the way a tray host does: the item's Menu property.
	menuPath := traytest.MenuPath(t, host, sender)
	click := func(label string) { traytest.Click(t, host, sender, menuPath, label) }
	click("Lock")
	eventually(t, "locked by the menu", key.Locked)
	eventually(t, "title locked", func() bool { return title() == "tpm-u2f: locked" })
	click("Unlock")
	eventually(t, "unlocked by the menu", func() bool { return !key.Locked() })
	click("Re-plug")
	eventually(t, "re-plugged", func() bool { key.mu.Lock(); defer key.mu.Unlock(); return key.replugs == 1 })
	// A request asked through the tray (no notification buttons).
	for _, c := range []struct {
		label string
		want  error
	}{{"Allow: example.org asks to sign in", nil}, {"Deny", presence.ErrDenied}} {
		answered := make(chan error, 1)
		go func() {
			answered <- key.ask.Confirm(context.Background(), presence.Request{Operation: "sign in", RelyingParty: "example.org"})
		}()
		eventually(t, "question shown", func() bool { return title() == "tpm-u2f: needs attention" })
		click(c.label)
		if err := <-answered; err != c.want {
			t.Fatalf("%s: Confirm = %v", c.label, err)
		}
		eventually(t, "question gone", func() bool { return title() == "tpm-u2f: unlocked" })
	}
	key.mu.Lock()
	key.attention = "the replay store is failing closed until 12:00"
	key.mu.Unlock()
	eventually(t, "needs attention", func() bool { return title() == "tpm-u2f: needs attention" })
	key.mu.Lock()
	key.attention = ""
	key.mu.Unlock()

	// A KDE-style host: the watcher lives in another process, and the
	// panel owns org.kde.StatusNotifierHost-PID on the connection it calls
	// the menu from. Its clicks count.
	kde := notifytest.Connect(t, addr)
	if reply, err := kde.RequestName("org.kde.StatusNotifierHost-4242", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", reply, err)
	}
	answered := make(chan error, 1)
	go func() {
		answered <- key.ask.Confirm(context.Background(), presence.Request{Operation: "sign in", RelyingParty: "example.org"})
	}()
	eventually(t, "question shown", func() bool { return title() == "tpm-u2f: needs attention" })
	// Any other process on the bus can call the menu: its Allow, by Event
	// or EventGroup, and its Quit are ignored, with a log line each.
	spoofer := notifytest.Connect(t, addr)
	traytest.Click(t, spoofer, sender, menuPath, "Allow: example.org asks to sign in")
	traytest.GroupClick(t, spoofer, sender, menuPath, "Allow: example.org asks to sign in")
	traytest.Click(t, spoofer, sender, menuPath, "Quit")
	eventually(t, "spoofed clicks logged", func() bool {
		return strings.Count(logs.String(), "not the tray host") == 3 && strings.Contains(logs.String(), "sender="+spoofer.Names()[0])
	})
	time.Sleep(100 * time.Millisecond) // a click that got through would be answered by now
	select {
	case err := <-answered:
		t.Fatalf("a spoofed Allow answered the question: %v", err)
	default:
	}
	if _, ok := key.ask.Pending(); !ok {
		t.Fatal("the question went away after spoofed clicks")
	}
	traytest.GroupClick(t, kde, sender, menuPath, "Deny")
	if err := <-answered; err != presence.ErrDenied {
		t.Fatalf("Deny from the KDE-style host: Confirm = %v", err)
	}
	key.mu.Lock()
	quit := key.quit
	key.mu.Unlock()
	if quit {
		t.Fatal("a spoofed Quit counted")
	}
	click("Quit")
	eventually(t, "quit", func() bool { key.mu.Lock(); defer key.mu.Unlock(); return key.quit })
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNoWatcher(t *testing.T) {
	addr := notifytest.SessionBus(t)
	if Available(notifytest.Connect(t, addr)) {
		t.Fatal("Available = true on a bus without a tray host")
	}
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
