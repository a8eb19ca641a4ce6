package pkcs11

import (
	"context"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// session is one PKCS#11 session of a Token. It belongs to the goroutine
// that took it from the pool until it is put back.
type session struct {
	h p11.SessionHandle
	// gen is the Token generation the session was opened in; a recovery
	// starts a new generation and older sessions are not reused.
	gen uint64
}

// sessionPool bounds how many sessions a Token has checked out at once and
// keeps the idle ones. A checked-out session holds a slot in sem; idle
// sessions hold none, so at most cap(sem) sessions are ever open.
type sessionPool struct {
	sem chan struct{}

	mu   sync.Mutex
	idle []*session
}

func newSessionPool(size int) *sessionPool {
	return &sessionPool{sem: make(chan struct{}, size)}
}

// acquire waits for a free slot, or for ctx or done.
func (p *sessionPool) acquire(ctx context.Context, done <-chan struct{}) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return ErrClosed
	}
}

func (p *sessionPool) release() { <-p.sem }

// pop returns an idle session, or nil.
func (p *sessionPool) pop() *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	s := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return s
}

func (p *sessionPool) push(s *session) {
	p.mu.Lock()
	p.idle = append(p.idle, s)
	p.mu.Unlock()
}

// drain removes and returns every idle session.
func (p *sessionPool) drain() []*session {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.idle
	p.idle = nil
	return out
}
