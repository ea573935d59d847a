// Package fprintdtest is an implementation of fprintd's D-Bus API
// (net.reactivated.Fprint) for tests, on a real dbus-daemon: one reader
// whose verifications answer with a script, and a record of what clients
// asked.
package fprintdtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// DevicePath is the reader's object path.
const DevicePath = dbus.ObjectPath("/net/reactivated/Fprint/Device/0")

const (
	service     = "net.reactivated.Fprint"
	managerPath = dbus.ObjectPath("/net/reactivated/Fprint/Manager")
	deviceIface = "net.reactivated.Fprint.Device"
	errPrefix   = "net.reactivated.Fprint.Error."
)

// Status is one VerifyStatus signal.
type Status struct {
	Result string
	Done   bool
}

// Server is a fake fprintd with one reader (or none).
type Server struct {
	// NoReader makes GetDefaultDevice fail with NoSuchDevice.
	NoReader bool
	// Enrolled are the user's enrolled fingers.
	Enrolled []string
	// ClaimError, when set, is the error name Claim fails with (e.g.
	// "AlreadyInUse").
	ClaimError string
	// Script holds, for each VerifyStart in turn, the statuses sent after
	// it (none: the reader waits for a finger forever).
	Script [][]Status
	// StartDelay holds VerifyStart's reply back, as a busy fprintd does.
	StartDelay time.Duration
	// Always answers every VerifyStart the Script has no entry for.
	Always *Status
	// Stale is sent inside VerifyStart, before its reply: what an answer
	// to an earlier verification looks like to the next client.
	Stale *Status
	// Immediate sends the Script's statuses right behind VerifyStart's
	// reply, with nothing between them: a reader that answers at once (an
	// error, a finger already on it), as the real fprintd can.
	Immediate bool

	conn *dbus.Conn
	mu   sync.Mutex
	log  []string
}

// Serve exports the server on the bus at addr and owns the fprintd name
// until the test ends.
func (s *Server) Serve(t *testing.T, addr string) {
	t.Helper()
	c, err := s.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
}

// Start is Serve outside a test (the e2e guest's fprintd); closing the
// connection ends it.
func (s *Server) Start(addr string) (*dbus.Conn, error) {
	c, err := dbus.Connect(addr)
	if err != nil {
		return nil, err
	}
	s.conn = c
	if err := c.Export(manager{s}, managerPath, service+".Manager"); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Export(device{s}, DevicePath, deviceIface); err != nil {
		c.Close()
		return nil, err
	}
	if r, err := c.RequestName(service, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		c.Close()
		return nil, fmt.Errorf("owning %s: %v %v", service, r, err)
	}
	return c, nil
}

// SetEnrolled changes the enrolled fingers while the server runs.
func (s *Server) SetEnrolled(fingers ...string) {
	s.mu.Lock()
	s.Enrolled = fingers
	s.mu.Unlock()
}

func (s *Server) enrolled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Enrolled
}

// Calls returns the device methods called so far, in order.
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *Server) record(call string) {
	s.mu.Lock()
	s.log = append(s.log, call)
	s.mu.Unlock()
}

// Emit sends a VerifyStatus signal from the fake fprintd.
func (s *Server) Emit(st Status) {
	s.conn.Emit(DevicePath, deviceIface+".VerifyStatus", st.Result, st.Done)
}

func fprintError(name string) *dbus.Error {
	return &dbus.Error{Name: errPrefix + name, Body: []any{name}}
}

type manager struct{ s *Server }

func (m manager) GetDefaultDevice() (dbus.ObjectPath, *dbus.Error) {
	if m.s.NoReader {
		return "", fprintError("NoSuchDevice")
	}
	return DevicePath, nil
}

func (m manager) GetDevices() ([]dbus.ObjectPath, *dbus.Error) {
	if m.s.NoReader {
		return nil, nil
	}
	return []dbus.ObjectPath{DevicePath}, nil
}

type device struct{ s *Server }

func (d device) ListEnrolledFingers(user string) ([]string, *dbus.Error) {
	d.s.record("ListEnrolledFingers")
	if f := d.s.enrolled(); len(f) > 0 {
		return f, nil
	}
	return nil, fprintError("NoEnrolledPrints")
}

func (d device) Claim(user string) *dbus.Error {
	if d.s.ClaimError != "" {
		d.s.record("Claim refused")
		return fprintError(d.s.ClaimError)
	}
	d.s.record("Claim")
	return nil
}

func (d device) Release() *dbus.Error {
	d.s.record("Release")
	return nil
}

func (d device) VerifyStart(msg dbus.Message, finger string) *dbus.Error {
	d.s.record("VerifyStart")
	if len(d.s.enrolled()) == 0 {
		return fprintError("NoEnrolledPrints")
	}
	if d.s.Stale != nil {
		d.s.Emit(*d.s.Stale)
	}
	time.Sleep(d.s.StartDelay)
	d.s.mu.Lock()
	var script []Status
	if len(d.s.Script) > 0 {
		script, d.s.Script = d.s.Script[0], d.s.Script[1:]
	} else if d.s.Always != nil {
		script = []Status{*d.s.Always}
	}
	immediate := d.s.Immediate
	d.s.mu.Unlock()
	if immediate {
		// The reply now, then the statuses on its heels, in that order
		// on the bus. godbus's own reply, sent when this returns, is a
		// second one the bus drops.
		reply := &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(msg.Serial()),
			dbus.FieldDestination: msg.Headers[dbus.FieldSender],
		}}
		d.s.conn.Send(reply, nil)
		for _, st := range script {
			d.s.Emit(st)
		}
		return nil
	}
	go func() {
		for _, st := range script {
			time.Sleep(20 * time.Millisecond)
			d.s.Emit(st)
		}
	}()
	return nil
}

func (d device) VerifyStop() *dbus.Error {
	d.s.record("VerifyStop")
	return nil
}
