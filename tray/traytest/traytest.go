// Package traytest plays a tray host on a real session bus, for tests:
// a StatusNotifierWatcher stub that records which item registered, and
// dbusmenu clicks sent the way a tray host sends them.
package traytest

import (
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"
)

// Watcher is a StatusNotifierWatcher stub.
type Watcher struct {
	mu     sync.Mutex
	sender string
	path   string
}

// RegisterStatusNotifierItem is the watcher method items call.
func (w *Watcher) RegisterStatusNotifierItem(sender dbus.Sender, path string) *dbus.Error {
	w.mu.Lock()
	w.sender, w.path = string(sender), path
	w.mu.Unlock()
	return nil
}

// Registered returns the bus name and path of the item that registered
// ("" before one did).
func (w *Watcher) Registered() (sender, path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sender, w.path
}

// ServeWatcher exports a Watcher on conn and owns the watcher's name, as
// a tray host (xfce4-panel, GNOME's AppIndicator extension) does.
func ServeWatcher(t *testing.T, conn *dbus.Conn) *Watcher {
	t.Helper()
	w := &Watcher{}
	if err := conn.Export(w, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", reply, err)
	}
	return w
}

// MenuPath reads the item's Menu property, as a host finds the menu.
func MenuPath(t *testing.T, conn *dbus.Conn, item string) dbus.ObjectPath {
	t.Helper()
	v, err := conn.Object(item, "/StatusNotifierItem").GetProperty("org.kde.StatusNotifierItem.Menu")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := v.Value().(dbus.ObjectPath)
	return p
}

type layout struct {
	ID       int32
	Props    map[string]dbus.Variant
	Children []dbus.Variant
}

func find(l layout, label string) (int32, bool) {
	if v, ok := l.Props["label"]; ok && v.Value() == label {
		return l.ID, true
	}
	for _, c := range l.Children {
		vals, ok := c.Value().([]any)
		if !ok || len(vals) != 3 {
			continue
		}
		child := layout{ID: vals[0].(int32), Props: vals[1].(map[string]dbus.Variant)}
		child.Children = append(child.Children, vals[2].([]dbus.Variant)...)
		if id, ok := find(child, label); ok {
			return id, true
		}
	}
	return 0, false
}

// ItemID finds the menu item labelled label (GetLayout).
func ItemID(t *testing.T, conn *dbus.Conn, item string, menu dbus.ObjectPath, label string) int32 {
	t.Helper()
	var rev uint32
	var l layout
	if err := conn.Object(item, menu).Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{}).Store(&rev, &l); err != nil {
		t.Fatalf("GetLayout: %v", err)
	}
	id, ok := find(l, label)
	if !ok {
		t.Fatalf("no %q in the menu", label)
	}
	return id
}

// Click clicks the item labelled label through conn (dbusmenu Event).
func Click(t *testing.T, conn *dbus.Conn, item string, menu dbus.ObjectPath, label string) {
	t.Helper()
	id := ItemID(t, conn, item, menu, label)
	if err := conn.Object(item, menu).Call("com.canonical.dbusmenu.Event", 0, id, "clicked", dbus.MakeVariant(""), uint32(0)).Err; err != nil {
		t.Fatalf("Event: %v", err)
	}
}

// GroupClick clicks it through EventGroup.
func GroupClick(t *testing.T, conn *dbus.Conn, item string, menu dbus.ObjectPath, label string) {
	t.Helper()
	id := ItemID(t, conn, item, menu, label)
	type event struct {
		ID        int32
		EventID   string
		Data      dbus.Variant
		Timestamp uint32
	}
	if err := conn.Object(item, menu).Call("com.canonical.dbusmenu.EventGroup", 0, []event{{id, "clicked", dbus.MakeVariant(""), 0}}).Err; err != nil {
		t.Fatalf("EventGroup: %v", err)
	}
}
