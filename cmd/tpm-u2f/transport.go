package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/uhid"
)

// openTransport returns the CTAPHID transport named by --transport, and
// the operation that power-cycles it.
func openTransport(f runFlags, serial string, log *slog.Logger) (ctaphid.Transport, func() error, error) {
	switch {
	case f.transport == "uhid":
		dev, err := uhid.Open(uhid.Config{
			Name:             f.hidName,
			Uniq:             serial,
			Vendor:           uint32(f.vendor),
			Product:          uint32(f.product),
			ReportDescriptor: ctaphid.ReportDescriptor,
		}, log)
		if err != nil {
			return nil, nil, fmt.Errorf("--transport uhid: %w", err)
		}
		return uhidTransport{dev: dev, log: log}, dev.Replug, nil
	case strings.HasPrefix(f.transport, "udp:"):
		t, err := ctaphid.ListenUDP(strings.TrimPrefix(f.transport, "udp:"), log)
		if err != nil {
			return nil, nil, fmt.Errorf("--transport: %w", err)
		}
		// Nothing to re-create: a UDP "device" has no plug.
		return t, func() error { return nil }, nil
	}
	return nil, nil, fmt.Errorf("--transport: unknown transport %q (want uhid or udp:HOST:PORT)", f.transport)
}

// uhidTransport carries CTAPHID reports over a uhid device.
type uhidTransport struct {
	dev *uhid.Device
	log *slog.Logger
}

func (u uhidTransport) ReadReport() (ctaphid.Report, error) {
	for {
		b, err := u.dev.ReadReport()
		if err != nil {
			return ctaphid.Report{}, err
		}
		var r ctaphid.Report
		if len(b) != ctaphid.ReportSize {
			// hidraw writers send whole reports; anything else is not CTAPHID.
			u.log.Debug("uhid: dropped an output report of the wrong size", "bytes", len(b))
			continue
		}
		copy(r.Data[:], b)
		return r, nil
	}
}

func (u uhidTransport) WriteReport(r ctaphid.Report) error { return u.dev.WriteReport(r.Data[:]) }
func (u uhidTransport) Close() error                       { return u.dev.Close() }
