package uhid

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Path is the uhid character device.
const Path = "/dev/uhid"

// Device is a virtual HID device. ReadReport may run on one goroutine
// while WriteReport, Replug and Close run on others.
type Device struct {
	cfg    Config
	log    *slog.Logger
	fd     int
	create []byte

	mu     sync.Mutex   // serialises writes to fd
	life   sync.RWMutex // held for reading around each read(2), for writing by Close: the fd is never used after close
	closed atomic.Bool
	opened atomic.Bool
	// reportSize strips hidraw's report ID byte: the FIDO descriptor's
	// output report is 64 bytes; the caller's descriptor decides.
	reportSize int
}

// Open creates the device. The kernel then binds hid-generic to it and a
// /dev/hidrawN appears.
func Open(cfg Config, log *slog.Logger) (*Device, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	create, err := marshalCreate2(cfg)
	if err != nil {
		return nil, err
	}
	// Non-blocking, so that Close can stop a ReadReport waiting in poll(2):
	// closing an fd does not wake a read(2) blocked on it.
	fd, err := unix.Open(Path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("uhid: open %s: %w", Path, err)
	}
	d := &Device{cfg: cfg, log: log, fd: fd, create: create, reportSize: 64}
	if err := d.write(create); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uhid: create: %w", err)
	}
	log.Info("uhid device created", "name", cfg.Name, "uniq", cfg.Uniq)
	return d, nil
}

func (d *Device) write(b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return fmt.Errorf("uhid: %w", net.ErrClosed)
	}
	for {
		n, err := unix.Write(d.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n != len(b) {
			return fmt.Errorf("uhid: short write (%d of %d bytes)", n, len(b))
		}
		return nil
	}
}

// Opened reports whether a host has the hidraw node open.
func (d *Device) Opened() bool { return d.opened.Load() }

// ReadReport returns the next output report a host wrote, with hidraw's
// report ID byte removed. Other events are handled here.
func (d *Device) ReadReport() ([]byte, error) {
	buf := make([]byte, EventSize)
	for {
		n, err := d.readEvent(buf)
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if n == 0 && err == nil {
			continue
		}
		if err != nil {
			return nil, err
		}
		ev, err := ParseEvent(buf[:n])
		if err != nil {
			d.log.Debug("uhid: bad event", "err", err)
			continue
		}
		switch ev.Type {
		case EventOutput:
			return append([]byte(nil), StripReportID(ev.Data, d.reportSize)...), nil
		case EventStart, EventStop:
			d.log.Debug("uhid: event", "type", ev.Type)
		case EventOpen:
			d.opened.Store(true)
			d.log.Debug("uhid: host opened the device")
		case EventClose:
			d.opened.Store(false)
			d.log.Debug("uhid: host closed the device")
		case EventGetReport:
			d.write(marshalReportReply(EventGetReportReply, ev.ID, uint16(unix.EIO)))
		case EventSetReport:
			d.write(marshalReportReply(EventSetReportReply, ev.ID, uint16(unix.EIO)))
		default:
			d.log.Debug("uhid: ignored event", "type", ev.Type)
		}
	}
}

// readEvent waits up to 200 ms for an event (so that Close is noticed)
// and reads it; n == 0 means nothing arrived.
func (d *Device) readEvent(buf []byte) (int, error) {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed.Load() {
		return 0, fmt.Errorf("uhid: %w", net.ErrClosed)
	}
	fds := []unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, 200); err != nil && err != unix.EINTR {
		return 0, fmt.Errorf("uhid: poll: %w", err)
	}
	if fds[0].Revents&unix.POLLIN == 0 {
		return 0, nil
	}
	n, err := unix.Read(d.fd, buf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("uhid: read: %w", err)
	}
	return n, nil
}

// WriteReport sends an input report to the host (UHID_INPUT2).
func (d *Device) WriteReport(data []byte) error {
	b, err := marshalInput2(data)
	if err != nil {
		return err
	}
	return d.write(b)
}

// Replug destroys the device and creates it again with the same Config:
// the host sees the key unplugged and plugged back in. A pending
// ReadReport carries on with the new device.
func (d *Device) Replug() error {
	if err := d.write(marshalType(EventDestroy)); err != nil {
		return fmt.Errorf("uhid: destroy: %w", err)
	}
	d.opened.Store(false)
	if err := d.write(d.create); err != nil {
		return fmt.Errorf("uhid: create: %w", err)
	}
	d.log.Info("uhid device re-plugged")
	return nil
}

// Close destroys the device and closes /dev/uhid. It is safe to call more
// than once.
func (d *Device) Close() error {
	d.life.Lock()
	defer d.life.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Swap(true) {
		return nil
	}
	unix.Write(d.fd, marshalType(EventDestroy))
	return unix.Close(d.fd)
}
