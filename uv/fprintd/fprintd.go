// Package fprintd verifies the user's fingerprint through fprintd, the
// desktop's fingerprint daemon, over its documented D-Bus API (service
// net.reactivated.Fprint on the system bus): Manager.GetDefaultDevice,
// Device.ListEnrolledFingers, Claim, VerifyStart, the VerifyStatus
// signal, VerifyStop and Release.
//
// It owns only the conversation with fprintd: what a match is worth
// (retries, the UV flag) is the token's business. A Verifier is safe for
// concurrent use; fprintd lets one client verify at a time, so a second
// Verify waits for the first.
package fprintd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/godbus/dbus/v5"
)

// The fprintd D-Bus API (fprintd's net.reactivated.Fprint.*.xml).
const (
	Service       = "net.reactivated.Fprint"
	ManagerPath   = dbus.ObjectPath("/net/reactivated/Fprint/Manager")
	ManagerIface  = "net.reactivated.Fprint.Manager"
	DeviceIface   = "net.reactivated.Fprint.Device"
	errorPrefix   = "net.reactivated.Fprint.Error."
	verifyStatus  = "VerifyStatus"
	anyFinger     = "any"
	errNoSuchDev  = errorPrefix + "NoSuchDevice"
	errNoEnrolled = errorPrefix + "NoEnrolledPrints"
)

// Result is the outcome of one verification.
type Result int

const (
	// NoMatch: a finger was read and matched no enrolled print.
	NoMatch Result = iota
	// Match: a finger was read and matched an enrolled print.
	Match
)

func (r Result) String() string {
	if r == Match {
		return "match"
	}
	return "no match"
}

var (
	// ErrUnavailable: fingerprint verification cannot happen now (no
	// fprintd, no reader, the reader is busy or went away, fprintd failed).
	// It is never a failed verification and must cost no retry.
	ErrUnavailable = errors.New("fprintd: fingerprint verification unavailable")
	// ErrNoEnrolledFingers: a reader exists but the user enrolled none.
	ErrNoEnrolledFingers = errors.New("fprintd: no enrolled fingers")
)

// State is what Probe finds.
type State int

const (
	// NoReader: no fprintd or no fingerprint reader.
	NoReader State = iota
	// NothingEnrolled: a reader, but no finger enrolled for the user.
	NothingEnrolled
	// Ready: a reader with at least one enrolled finger.
	Ready
)

// Verifier verifies one user's fingers.
type Verifier struct {
	conn *dbus.Conn
	user string
	log  *slog.Logger
	slot chan struct{}
}

// New returns a Verifier for username on conn (the system bus:
// dbus.ConnectSystemBus, which honours DBUS_SYSTEM_BUS_ADDRESS).
func New(conn *dbus.Conn, username string, log *slog.Logger) *Verifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Verifier{conn: conn, user: username, log: log, slot: make(chan struct{}, 1)}
}

// unavailable wraps a D-Bus failure as ErrUnavailable, keeping fprintd's
// error name (never the user's data) for the log.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

func dbusErrorName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	var dep *dbus.Error
	if errors.As(err, &dep) {
		return dep.Name
	}
	return ""
}

// device finds the default reader.
func (v *Verifier) device(ctx context.Context) (dbus.BusObject, error) {
	var path dbus.ObjectPath
	err := v.conn.Object(Service, ManagerPath).CallWithContext(ctx, ManagerIface+".GetDefaultDevice", 0).Store(&path)
	if err != nil {
		return nil, unavailable("no fingerprint reader", err)
	}
	return v.conn.Object(Service, path), nil
}

// Probe tells whether a reader with an enrolled finger is there
// (getInfo's uv option: true when Ready, false when NothingEnrolled,
// absent when NoReader).
func (v *Verifier) Probe(ctx context.Context) State {
	dev, err := v.device(ctx)
	if err != nil {
		return NoReader
	}
	var fingers []string
	err = dev.CallWithContext(ctx, DeviceIface+".ListEnrolledFingers", 0, v.user).Store(&fingers)
	switch {
	case err == nil && len(fingers) > 0:
		return Ready
	case err == nil, dbusErrorName(err) == errNoEnrolled:
		return NothingEnrolled
	}
	v.log.Info("fprintd: listing enrolled fingers failed", "error", dbusErrorName(err))
	return NoReader
}

// Verify asks fprintd to verify any enrolled finger of the user and
// returns Match or NoMatch, each only for a finger read during this call.
// It returns ErrUnavailable when verification cannot happen (no reader,
// busy, disconnected, fprintd's own error), ErrNoEnrolledFingers when
// nothing is enrolled, and ctx's error when ctx ends first (the client's
// CANCEL, the prompt's timeout). In every case the reader is released.
func (v *Verifier) Verify(ctx context.Context) (Result, error) {
	select {
	case v.slot <- struct{}{}:
		defer func() { <-v.slot }()
	case <-ctx.Done():
		return NoMatch, ctx.Err()
	}
	dev, err := v.device(ctx)
	if err != nil {
		return NoMatch, err
	}
	// Signals count only from fprintd itself, on this device's path: any
	// other process on the bus can send a VerifyStatus that looks like a
	// match.
	var owner string
	if err := v.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, Service).Store(&owner); err != nil {
		return NoMatch, unavailable("fprintd has no owner on the bus", err)
	}
	if err := dev.CallWithContext(ctx, DeviceIface+".Claim", 0, v.user).Err; err != nil {
		return NoMatch, unavailable("claiming the reader", err)
	}
	defer func() {
		// Release even when ctx ended: a reader left claimed is a reader
		// nobody else can use.
		if err := dev.Call(DeviceIface+".Release", 0).Err; err != nil {
			v.log.Info("fprintd: release failed", "error", dbusErrorName(err))
		}
	}()
	signals := make(chan *dbus.Signal, 16)
	match := []dbus.MatchOption{dbus.WithMatchObjectPath(dev.Path()), dbus.WithMatchInterface(DeviceIface), dbus.WithMatchMember(verifyStatus), dbus.WithMatchSender(owner)}
	if err := v.conn.AddMatchSignalContext(ctx, match...); err != nil {
		return NoMatch, unavailable("subscribing to VerifyStatus", err)
	}
	defer v.conn.RemoveMatchSignal(match...)
	v.conn.Signal(signals)
	defer v.conn.RemoveSignal(signals)
	// Subscribed before VerifyStart, so no answer to it is missed.
	start := dev.CallWithContext(ctx, DeviceIface+".VerifyStart", 0, anyFinger)
	if err := start.Err; err != nil {
		if dbusErrorName(err) == errNoEnrolled {
			return NoMatch, ErrNoEnrolledFingers
		}
		if ctx.Err() != nil {
			// The call gave up, but fprintd may have started verifying
			// before it did: stop it before the reader is released.
			if err := dev.Call(DeviceIface+".VerifyStop", 0).Err; err != nil {
				v.log.Debug("fprintd: VerifyStop", "error", dbusErrorName(err))
			}
			return NoMatch, ctx.Err()
		}
		return NoMatch, unavailable("VerifyStart", err)
	}
	defer func() {
		if err := dev.Call(DeviceIface+".VerifyStop", 0).Err; err != nil {
			v.log.Debug("fprintd: VerifyStop", "error", dbusErrorName(err))
		}
	}()
	// A status fprintd sent before its reply to VerifyStart answers an
	// earlier verification (someone else's, or one VerifyStop cancelled),
	// never ours: the bus keeps one sender's messages in order, and godbus
	// numbers what it receives in that order. Ours may come right after
	// the reply, even before this goroutine runs again, so it is told
	// apart by that number, not by when it is read.
	started := start.ResponseSequence
	for {
		select {
		case <-ctx.Done():
			return NoMatch, ctx.Err()
		case s := <-signals:
			if s == nil || s.Sequence <= started || s.Sender != owner || s.Path != dev.Path() || s.Name != DeviceIface+"."+verifyStatus || len(s.Body) != 2 {
				continue
			}
			result, ok1 := s.Body[0].(string)
			done, ok2 := s.Body[1].(bool)
			if !ok1 || !ok2 {
				continue
			}
			r, final, err := judge(result)
			if !final {
				v.log.Info("fprintd: try again", "status", result)
				if done {
					// fprintd ended this attempt; start another.
					dev.Call(DeviceIface+".VerifyStop", 0)
					restart := dev.CallWithContext(ctx, DeviceIface+".VerifyStart", 0, anyFinger)
					if err := restart.Err; err != nil {
						return NoMatch, unavailable("VerifyStart after a retry", err)
					}
					started = restart.ResponseSequence
				}
				continue
			}
			return r, err
		}
	}
}

// judge says what a VerifyStatus result means (fprintd's
// net.reactivated.Fprint.Device.xml): a verdict (match, no match), a
// reason to try again, or the reader gone.
func judge(result string) (r Result, final bool, err error) {
	switch result {
	case "verify-match":
		return Match, true, nil
	case "verify-no-match":
		return NoMatch, true, nil
	case "verify-retry-scan", "verify-swipe-too-short", "verify-finger-not-centered", "verify-remove-and-retry":
		return NoMatch, false, nil
	}
	// verify-disconnected, verify-unknown-error and anything newer: the
	// reader did not judge the finger, so it is never a failed attempt.
	return NoMatch, true, fmt.Errorf("%w: %s", ErrUnavailable, strings.TrimPrefix(result, "verify-"))
}
