package pkcs11

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"
)

// A process loads each PKCS#11 module once. The registry maps the module's
// real path (symlinks resolved) to its shared state; Module values are
// references to it.
var registry = struct {
	sync.Mutex
	m map[string]*moduleState
}{m: map[string]*moduleState{}}

// moduleState is one loaded library. The library is never unloaded (dlclose
// of a module linking OpenSSL and loading it again is unsafe); it is
// initialised while at least one Module refers to it and finalised when the
// last one closes.
type moduleState struct {
	path string
	ctx  *p11.Ctx

	mu   sync.Mutex // guards refs and C_Initialize/C_Finalize
	refs int
	// gen counts the initialisations this package made. Sessions and
	// object handles from before one are dead, and the module hands their
	// numbers out again: a Token that sees gen change recovers.
	gen atomic.Uint64

	// owners maps each session number this package has open to the
	// session that holds it. A session that died may have its number
	// handed out again, to another Token of the process or to a new
	// session of the same one; a session is closed only while it still
	// owns its number, so closing a stale session never closes someone
	// else's. Opens hold sessMu shared (they may run together), closes and
	// C_Initialize hold it exclusively, so that no open is handing out a
	// number while a close checks who owns it. ownMu guards the map.
	sessMu sync.RWMutex
	ownMu  sync.Mutex
	owners map[p11.SessionHandle]*session
}

// openSession opens a session on slot and records s as its owner.
func (st *moduleState) openSession(slot, flags uint, s *session) error {
	st.sessMu.RLock()
	defer st.sessMu.RUnlock()
	h, err := st.ctx.OpenSession(slot, flags)
	if err != nil {
		return err
	}
	s.h = h
	st.ownMu.Lock()
	if st.owners == nil {
		st.owners = map[p11.SessionHandle]*session{}
	}
	st.owners[h] = s
	st.ownMu.Unlock()
	return nil
}

// closeSession closes s if it still owns its number, and forgets it. It
// reports whether it called C_CloseSession.
func (st *moduleState) closeSession(s *session) bool {
	st.sessMu.Lock()
	defer st.sessMu.Unlock()
	st.ownMu.Lock()
	owned := st.owners[s.h] == s
	if owned {
		delete(st.owners, s.h)
	}
	st.ownMu.Unlock()
	if owned {
		_ = st.ctx.CloseSession(s.h)
	}
	return owned
}

// forgetSession forgets s without closing it: the module declared it dead.
func (st *moduleState) forgetSession(s *session) {
	st.ownMu.Lock()
	defer st.ownMu.Unlock()
	if st.owners[s.h] == s {
		delete(st.owners, s.h)
	}
}

// Module is a reference to a loaded and initialised PKCS#11 module. Opening
// the same path twice in a process shares one library and one
// initialisation; the module is finalised (C_Finalize) when the last Module
// for it is closed. A Module is safe for concurrent use.
//
// PKCS#11 state is per process: other code in the process that finalises the
// same library (another PKCS#11 wrapper, a test) pulls it from under every
// Module; Tokens notice (CKR_CRYPTOKI_NOT_INITIALIZED) and initialise it
// again. For SoftHSM2, the configuration (SOFTHSM2_CONF) is the one in the
// environment at the first open after the module was last finalised.
type Module struct {
	st     *moduleState
	closed atomic.Bool
}

// OpenModule loads (once per process) and initialises (once per open
// period) the PKCS#11 module at path. A missing file gives an error wrapping
// [ErrModuleNotFound]; a file that is not a PKCS#11 library one wrapping
// [ErrModuleLoad]. A module another part of the process already initialised
// (CKR_CRYPTOKI_ALREADY_INITIALIZED) is accepted.
func OpenModule(path string) (*Module, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty module path", ErrModuleNotFound)
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s does not exist or is not a file", ErrModuleNotFound, path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrModuleNotFound, path, err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrModuleNotFound, path, err)
	}

	registry.Lock()
	st, ok := registry.m[real]
	if !ok {
		c := p11.New(real)
		if c == nil {
			registry.Unlock()
			return nil, fmt.Errorf("%w: %s (dlopen or C_GetFunctionList failed)", ErrModuleLoad, real)
		}
		st = &moduleState{path: real, ctx: c}
		registry.m[real] = st
	}
	registry.Unlock()

	st.mu.Lock()
	defer st.mu.Unlock()
	if st.refs == 0 {
		if err := st.initializeLocked(); err != nil {
			return nil, err
		}
	}
	st.refs++
	return &Module{st: st}, nil
}

// initializeLocked calls C_Initialize, accepting an already initialised
// module; a new initialisation starts a new generation. st.mu must be held.
func (st *moduleState) initializeLocked() error {
	// No session opens or closes during the initialisation, so that none
	// is recorded with the wrong generation.
	st.sessMu.Lock()
	defer st.sessMu.Unlock()
	err := st.ctx.Initialize()
	switch {
	case err == nil:
		// Every session of the previous initialisation is gone.
		st.ownMu.Lock()
		st.owners = nil
		st.ownMu.Unlock()
		st.gen.Add(1)
	case !isCKR(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED):
		return fmt.Errorf("pkcs11: C_Initialize %s: %w", st.path, err)
	}
	return nil
}

// ensureInitialized initialises the module again after something
// finalised it behind our back. An already initialised module is fine.
func (st *moduleState) ensureInitialized() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.refs == 0 {
		return ErrClosed
	}
	return st.initializeLocked()
}

// Path returns the real path of the module (symlinks resolved).
func (m *Module) Path() string { return m.st.path }

// Ctx returns the underlying github.com/miekg/pkcs11 context, for callers
// that need raw PKCS#11 calls (tests, diagnostics). Calling Finalize or
// Destroy on it breaks every Module and Token of this library in the process.
// Sessions opened through it are not in the record that keeps a Token from
// closing a session number the module handed out again: a Token recovering
// from dead sessions may close such a session if the module gave it the
// number of one of the Token's dead ones.
func (m *Module) Ctx() *p11.Ctx { return m.st.ctx }

// Info returns the module's C_GetInfo (library manufacturer, description,
// Cryptoki version).
func (m *Module) Info() (p11.Info, error) {
	if m.closed.Load() {
		return p11.Info{}, ErrClosed
	}
	info, err := m.st.ctx.GetInfo()
	if err != nil {
		return p11.Info{}, fmt.Errorf("pkcs11: C_GetInfo: %w", err)
	}
	return info, nil
}

// Close releases the reference. The last Close of a module finalises it
// (C_Finalize), which closes every session any Token still has on it. Close
// is idempotent.
func (m *Module) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	st := m.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.refs--
	if st.refs > 0 {
		return nil
	}
	err := st.ctx.Finalize()
	if err != nil && !isCKR(err, p11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		return fmt.Errorf("pkcs11: C_Finalize %s: %w", st.path, err)
	}
	return nil
}
