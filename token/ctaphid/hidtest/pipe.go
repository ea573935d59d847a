// Package hidtest holds an in-memory CTAPHID transport pair, so that the
// framing and the token are tested without a kernel (as wireguard-go's
// tuntest does for its device).
package hidtest

import (
	"fmt"
	"net"
	"sync"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// NewPipe returns two connected transports: what one writes, the other
// reads. Closing either closes both.
func NewPipe() (device, host ctaphid.Transport) {
	shared := &pipeState{closed: make(chan struct{})}
	a, b := make(chan ctaphid.Report, 256), make(chan ctaphid.Report, 256)
	return &end{in: a, out: b, s: shared}, &end{in: b, out: a, s: shared}
}

type pipeState struct {
	once   sync.Once
	closed chan struct{}
}

type end struct {
	in, out chan ctaphid.Report
	s       *pipeState
}

var errClosed = fmt.Errorf("hidtest: pipe closed: %w", net.ErrClosed)

func (e *end) ReadReport() (ctaphid.Report, error) {
	select {
	case r := <-e.in:
		return r, nil
	case <-e.s.closed:
		return ctaphid.Report{}, errClosed
	}
}

func (e *end) WriteReport(r ctaphid.Report) error {
	select {
	case <-e.s.closed:
		return errClosed
	default:
	}
	select {
	case e.out <- r:
		return nil
	case <-e.s.closed:
		return errClosed
	}
}

func (e *end) Close() error {
	e.s.once.Do(func() { close(e.s.closed) })
	return nil
}
