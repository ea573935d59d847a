package presence

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/godbus/dbus/v5"
)

// signalOf is what godbus hands a signal subscriber for msg.
func signalOf(msg *dbus.Message) *dbus.Signal {
	sender, _ := msg.Headers[dbus.FieldSender].Value().(string)
	iface, _ := msg.Headers[dbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[dbus.FieldMember].Value().(string)
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	return &dbus.Signal{Sender: sender, Path: path, Name: iface + "." + member, Body: msg.Body}
}

func wire(tb testing.TB, sender, member string, body ...any) []byte {
	msg := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath:      dbus.MakeVariant(dbus.ObjectPath("/org/freedesktop/Notifications")),
		dbus.FieldInterface: dbus.MakeVariant(notifyIface),
		dbus.FieldMember:    dbus.MakeVariant(member),
		dbus.FieldSender:    dbus.MakeVariant(sender),
	}, Body: body}
	if len(body) > 0 {
		msg.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(body...))
	}
	var b bytes.Buffer
	if err := msg.EncodeTo(&b, binary.LittleEndian); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// FuzzJudgeSignal decodes arbitrary bytes as a D-Bus message (godbus's
// wire decoder) and asks judge what it means for notification 7 of
// server ":1.5". Nothing panics, and only the server's own signal for our
// notification can allow.
func FuzzJudgeSignal(f *testing.F) {
	f.Add(wire(f, ":1.5", "ActionInvoked", uint32(7), "allow"))
	f.Add(wire(f, ":1.9", "ActionInvoked", uint32(7), "allow"))
	f.Add(wire(f, ":1.5", "NotificationClosed", uint32(7), uint32(1)))
	f.Add(wire(f, ":1.5", "ActionInvoked", uint32(7)))
	f.Add(wire(f, ":1.5", "ActionInvoked", "7", uint32(7)))
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := dbus.DecodeMessage(bytes.NewReader(b))
		if err != nil {
			return
		}
		sig := signalOf(msg)
		v, _ := judge(sig, 7, ":1.5")
		if v == verdictAllow && (sig.Sender != ":1.5" || len(sig.Body) != 2 || sig.Body[0] != uint32(7) || sig.Body[1] != "allow") {
			t.Fatalf("allowed by %+v", sig)
		}
	})
}

func TestJudge(t *testing.T) {
	cases := []struct {
		sender, member string
		body           []any
		want           verdict
	}{
		{":1.5", "ActionInvoked", []any{uint32(7), "allow"}, verdictAllow},
		{":1.5", "ActionInvoked", []any{uint32(7), "deny"}, verdictDeny},
		{":1.5", "ActionInvoked", []any{uint32(7), "default"}, verdictWaiting},
		{":1.9", "ActionInvoked", []any{uint32(7), "allow"}, verdictSpoofed},
		{":1.5", "ActionInvoked", []any{uint32(8), "allow"}, verdictIgnore},
		{":1.5", "ActionInvoked", []any{uint32(7)}, verdictMalformed},
		{":1.5", "NotificationClosed", []any{uint32(7), uint32(1)}, verdictTimeout},
		{":1.5", "NotificationClosed", []any{uint32(7), uint32(2)}, verdictDeny},
		{":1.5", "ActivationToken", []any{uint32(7), "x"}, verdictIgnore},
	}
	for _, c := range cases {
		msg, err := dbus.DecodeMessage(bytes.NewReader(wire(t, c.sender, c.member, c.body...)))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := judge(signalOf(msg), 7, ":1.5"); v != c.want {
			t.Errorf("%s %s %v: verdict %d, want %d", c.sender, c.member, c.body, v, c.want)
		}
	}
}
