//go:build !linux

package uhid

import "errors"

// Device is unavailable outside Linux.
type Device struct{}

// Open fails: uhid is a Linux interface.
func Open(Config, any) (*Device, error) { return nil, errors.New("uhid: needs Linux") }

func (*Device) ReadReport() ([]byte, error) { return nil, errors.New("uhid: needs Linux") }
func (*Device) WriteReport([]byte) error    { return errors.New("uhid: needs Linux") }
func (*Device) Replug() error               { return errors.New("uhid: needs Linux") }
func (*Device) Close() error                { return nil }
