package tpm

import (
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// sessionPool keeps salted HMAC sessions with command parameter
// encryption (EncryptIn) warm, so that no StartAuthSession runs on the
// signing path once the pool is warm. The salt is encrypted to the storage
// primary, so the session key is unknown to anyone watching the TPM bus.
// Only the command side is encrypted: TPM2_Sign has no TPM2B first
// response parameter, and a Sign with EncryptOut is refused by the TPM.
//
// A session handed out by get must come back through put (it worked) or
// discard (it saw an error; seed 002: never reuse it).
type sessionPool struct {
	t transport.TPM

	mu     sync.Mutex
	salt   tpm2.TPMHandle
	pub    tpm2.TPMTPublic
	size   int
	idle   []tpm2.Session
	issued int // sessions started, for tests and stats
}

func newSessionPool(t transport.TPM, salt tpm2.TPMHandle, pub tpm2.TPMTPublic, size int) *sessionPool {
	return &sessionPool{t: t, salt: salt, pub: pub, size: size}
}

func (p *sessionPool) start() (tpm2.Session, error) {
	p.mu.Lock()
	salt, pub := p.salt, p.pub
	p.issued++
	p.mu.Unlock()
	s, _, err := tpm2.HMACSession(p.t, tpm2.TPMAlgSHA256, 16,
		tpm2.Salted(salt, pub),
		tpm2.AESEncryption(128, tpm2.EncryptIn))
	return s, err
}

// warm fills the pool.
func (p *sessionPool) warm() error {
	for {
		p.mu.Lock()
		full := len(p.idle) >= p.size
		p.mu.Unlock()
		if full {
			return nil
		}
		s, err := p.start()
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.idle = append(p.idle, s)
		p.mu.Unlock()
	}
}

// get returns an idle session, or starts one when none is idle (the pool
// was drained by errors).
func (p *sessionPool) get() (tpm2.Session, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		s := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	return p.start()
}

func (p *sessionPool) put(s tpm2.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) < p.size {
		p.idle = append(p.idle, s)
		return
	}
	tpm2.FlushContext{FlushHandle: s.Handle()}.Execute(p.t)
}

// discard flushes a session that saw an error. The flush may fail (the
// session may already be gone, which is often why we are here).
func (p *sessionPool) discard(s tpm2.Session) {
	tpm2.FlushContext{FlushHandle: s.Handle()}.Execute(p.t)
}

// forget drops every idle session without flushing: after a TPM restart
// their handles mean nothing, or worse, belong to someone else now.
func (p *sessionPool) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = nil
}

// rebind makes new sessions salt to a re-created primary.
func (p *sessionPool) rebind(salt tpm2.TPMHandle, pub tpm2.TPMTPublic) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.salt, p.pub = salt, pub
}

func (p *sessionPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, s := range idle {
		tpm2.FlushContext{FlushHandle: s.Handle()}.Execute(p.t)
	}
}

// started reports how many sessions the pool has started.
func (p *sessionPool) started() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issued
}
