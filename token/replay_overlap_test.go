package token_test

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// overlapProbe is a replay guard and a key wrapper that see whether the
// replay record is made while the TPM signs, and whether the response
// waits for it.
type overlapProbe struct {
	memoryReplay
	recordStarted chan struct{} // closed when Record begins
	signed        chan struct{} // closed when Sign returns
	overlapped    atomic.Bool   // Sign saw Record begin before it returned
	beforeLoad    atomic.Bool   // Record began before the key was loaded
	durable       atomic.Bool   // Record returned
	recordErr     error
}

func (p *overlapProbe) arm() {
	p.recordStarted, p.signed = make(chan struct{}), make(chan struct{})
	p.overlapped.Store(false)
	p.beforeLoad.Store(false)
	p.durable.Store(false)
}

func (p *overlapProbe) Record(k [32]byte) error {
	close(p.recordStarted)
	// The record becomes durable only after the signature exists, so a
	// response that did not wait for it would be seen (durable false).
	select {
	case <-p.signed:
	case <-time.After(5 * time.Second):
	}
	time.Sleep(time.Millisecond)
	if p.recordErr != nil {
		return p.recordErr
	}
	defer p.durable.Store(true)
	return p.memoryReplay.Record(k)
}

type probeKeys struct {
	token.Keys
	p *overlapProbe
}

func (k probeKeys) UseCredential(id []byte, rp [32]byte, fn func(crypto.Signer) error) error {
	select {
	case <-k.p.recordStarted:
		k.p.beforeLoad.Store(true)
	case <-time.After(time.Second): // the record waits for the loaded key
	}
	return k.Keys.UseCredential(id, rp, func(s crypto.Signer) error { return fn(probeSigner{s, k.p}) })
}

type probeSigner struct {
	crypto.Signer
	p *overlapProbe
}

func (s probeSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	defer close(s.p.signed)
	select {
	case <-s.p.recordStarted:
		s.p.overlapped.Store(true)
	case <-time.After(time.Second): // the old order: Record only after Sign
	}
	return s.Signer.Sign(r, d, o)
}

// TestReplayRecordOverlapsTheSignature: the replay store's write and fsync
// run while the TPM loads the key and signs (issue 17), and still no
// response leaves before the record is durable, nor at all when recording
// fails.
func TestReplayRecordOverlapsTheSignature(t *testing.T) {
	p := &overlapProbe{memoryReplay: memoryReplay{seen: map[[32]byte]bool{}}}
	a := token.New(token.Config{Keys: probeKeys{token.TPMKeys{Engine: tpmtestSimulatorEngine(t)}, p}, Presence: presence.Always{}, Replay: p})
	defer a.Close()
	app := sha256.Sum256([]byte("https://example.org"))
	r := register(t, a, app, sha256.Sum256([]byte("r")))
	c := makeCredential(t, a, "example.org")

	for _, op := range []struct {
		name string
		ok   func() bool
	}{
		{"U2F authenticate", func() bool {
			chal := sha256.Sum256([]byte{byte(len(p.seen))})
			rsp := authenticate(a, 0x03, app, chal, r.handle, false)
			if sw(rsp) != token.SWNoError {
				return false
			}
			verifyAssertion(t, r, app, chal, rsp, 1)
			return true
		}},
		{"CTAP2 getAssertion", func() bool {
			st, _, _ := getAssertion(t, a, "example.org", sha256.Sum256([]byte{0xff, byte(len(p.seen))}), c, nil)
			return st == ctap2.OK
		}},
	} {
		p.arm()
		p.recordErr = nil
		if !op.ok() {
			t.Fatalf("%s failed", op.name)
		}
		if !p.overlapped.Load() {
			t.Errorf("%s: the replay record began only after the signature", op.name)
		}
		if !p.beforeLoad.Load() {
			t.Errorf("%s: with presence settled, the replay record did not overlap the key's load", op.name)
		}
		if !p.durable.Load() {
			t.Errorf("%s: the response left before the replay record was durable", op.name)
		}
		// A record that fails withholds the signature made meanwhile.
		p.arm()
		p.recordErr = errors.New("disk full")
		if op.ok() {
			t.Errorf("%s: answered although its replay record failed", op.name)
		}
	}
}
