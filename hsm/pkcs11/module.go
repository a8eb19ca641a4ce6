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
// real path (symlinks resolved) to its shared state; module values are
// references to it.
var registry = struct {
	sync.Mutex
	m map[string]*moduleState
}{m: map[string]*moduleState{}}

// moduleState is one loaded library. The library is never unloaded (dlclose
// of a module linking OpenSSL and loading it again is unsafe); it is
// initialised while at least one module refers to it and finalised when the
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

// module is a reference to a loaded and initialised PKCS#11 module. Opening
// the same library twice in a process (under one path or several: a
// symlink and its target) shares one library and one initialisation; the
// module is finalised (C_Finalize) when the last reference is closed. A
// module is safe for concurrent use.
//
// PKCS#11 state is per process: other code in the process that finalises the
// same library (another PKCS#11 wrapper, a test) pulls it from under every
// reference; Tokens notice (CKR_CRYPTOKI_NOT_INITIALIZED) and initialise it
// again. For SoftHSM2, the configuration (SOFTHSM2_CONF) is the one in the
// environment at the first open after the module was last finalised.
type module struct {
	st *moduleState
	// path is the module's path as the caller gave it, which messages and
	// TokenInfo.ModulePath print (st.path, the registry's key, has
	// symlinks resolved).
	path   string
	closed atomic.Bool
}

// openModule loads (once per process) and initialises (once per open
// period) the PKCS#11 module at path. A missing file gives an error wrapping
// [ErrModuleNotFound]; a file that is not a PKCS#11 library one wrapping
// [ErrModuleLoad]. A module another part of the process already initialised
// (CKR_CRYPTOKI_ALREADY_INITIALIZED) is accepted.
func openModule(path string) (*module, error) {
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
			return nil, fmt.Errorf("%w: %s (dlopen or C_GetFunctionList failed)", ErrModuleLoad, path)
		}
		st = &moduleState{path: real, ctx: c}
		registry.m[real] = st
	}
	registry.Unlock()

	st.mu.Lock()
	defer st.mu.Unlock()
	if st.refs == 0 {
		if err := st.initializeLocked(path); err != nil {
			return nil, err
		}
	}
	st.refs++
	return &module{st: st, path: path}, nil
}

// initializeLocked calls C_Initialize, accepting an already initialised
// module; a new initialisation starts a new generation. name is the
// module's path for messages. st.mu must be held.
func (st *moduleState) initializeLocked(name string) error {
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
		return fmt.Errorf("pkcs11: C_Initialize %s: %w", name, err)
	}
	return nil
}

// ensureInitialized initialises the module again after something
// finalised it behind our back. An already initialised module is fine.
func (m *module) ensureInitialized() error {
	st := m.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.refs == 0 {
		return ErrClosed
	}
	return st.initializeLocked(m.path)
}

// Path returns the module's path as the caller gave it.
func (m *module) Path() string { return m.path }

// Close releases the reference. The last Close of a module finalises it
// (C_Finalize), which closes every session any Token still has on it. Close
// is idempotent.
func (m *module) Close() error {
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
		return fmt.Errorf("pkcs11: C_Finalize %s: %w", m.path, err)
	}
	return nil
}

// proxyModules are where distributions install p11-kit's proxy module
// (p11-kit-proxy.so), which loads the modules p11-kit is configured with
// (/usr/share/p11-kit/modules, /etc/pkcs11/modules) and presents their
// tokens as one module. Patterns are expanded with filepath.Glob, so that
// Debian's multiarch directory of any architecture is found.
var proxyModules = []string{
	"/usr/lib/*-linux-gnu*/p11-kit-proxy.so", // Debian, Ubuntu (package libp11-kit0 or p11-kit-modules)
	"/usr/lib64/p11-kit-proxy.so",            // Fedora, RHEL, openSUSE
	"/usr/lib/p11-kit-proxy.so",              // Arch, Alpine
	"/usr/local/lib/p11-kit-proxy.so",        // source builds, FreeBSD
	"/opt/homebrew/lib/p11-kit-proxy.so",     // Homebrew (Apple silicon)
}

// DefaultModulePath returns the module used when neither [WithModulePath]
// nor the URI's module-path names one: p11-kit's proxy module
// (p11-kit-proxy.so, e.g. /usr/lib/x86_64-linux-gnu/p11-kit-proxy.so on
// Debian), the first of its usual places that holds it. Without it the
// error wraps [ErrModuleNotFound] and says to add module-path=. No other
// module (SoftHSM2 in particular) is ever picked by default.
func DefaultModulePath() (string, error) {
	for _, g := range proxyModules {
		matches, _ := filepath.Glob(g)
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() {
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("%w: the URI has no module-path= and p11-kit's proxy module (p11-kit-proxy.so), the default, is not installed: add module-path=/path/to/the/vendor/module.so to the URI's query", ErrModuleNotFound)
}
