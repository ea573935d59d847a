package tpmtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Exchange is one command sent to the TPM and the response it gave, byte
// for byte as they crossed the interface (Response is nil when the
// transport failed).
type Exchange struct {
	Command  []byte
	Response []byte
}

// Code is the exchange's command code.
func (x Exchange) Code() tpm2.TPMCC {
	if len(x.Command) < 10 {
		return 0
	}
	return tpm2.TPMCC(binary.BigEndian.Uint32(x.Command[6:10]))
}

// Recorder is a transport.TPM that keeps every command and response that
// passes through it: what anyone probing the bus between the daemon and
// the TPM (an interposer on SPI/LPC, a resource manager, swtpm's socket)
// sees. It is safe for concurrent use.
type Recorder struct {
	next transport.TPM

	mu  sync.Mutex
	log []Exchange
}

// NewRecorder wraps t.
func NewRecorder(t transport.TPM) *Recorder { return &Recorder{next: t} }

// Send implements transport.TPM.
func (r *Recorder) Send(cmd []byte) ([]byte, error) {
	// Copied before sending: the simulator works on the command buffer
	// in place (it decrypts the first parameter where it lies), so a copy
	// taken afterwards shows what the TPM read, not what crossed the bus.
	sent := bytes.Clone(cmd)
	rsp, err := r.next.Send(cmd)
	r.mu.Lock()
	r.log = append(r.log, Exchange{Command: sent, Response: bytes.Clone(rsp)})
	r.mu.Unlock()
	return rsp, err
}

// Exchanges returns what was recorded so far.
func (r *Recorder) Exchanges() []Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Exchange(nil), r.log...)
}

// Find returns where needle occurs in the recording, one line per hit
// ("command 3 (TPM_CC 0x0000012a)" or "response ..."); none when it never
// crossed the interface in the clear.
func (r *Recorder) Find(needle []byte) []string {
	if len(needle) == 0 {
		return nil
	}
	var hits []string
	for i, x := range r.Exchanges() {
		if bytes.Contains(x.Command, needle) {
			hits = append(hits, fmt.Sprintf("command %d (TPM_CC 0x%08x)", i, uint32(x.Code())))
		}
		if bytes.Contains(x.Response, needle) {
			hits = append(hits, fmt.Sprintf("response %d (TPM_CC 0x%08x)", i, uint32(x.Code())))
		}
	}
	return hits
}

// Codes returns the command codes recorded, in order.
func (r *Recorder) Codes() []tpm2.TPMCC {
	var out []tpm2.TPMCC
	for _, x := range r.Exchanges() {
		out = append(out, x.Code())
	}
	return out
}
