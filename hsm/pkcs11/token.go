package pkcs11

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	p11 "github.com/miekg/pkcs11"
)

// TokenInfo describes an open token.
type TokenInfo struct {
	Label        string // CK_TOKEN_INFO label (RFC 7512 "token")
	Serial       string // serial number (RFC 7512 "serial")
	Manufacturer string // manufacturer ID (RFC 7512 "manufacturer")
	Model        string // model (RFC 7512 "model")
	// SlotID is the slot the token is in now; it can change after a
	// recovery, and between processes.
	SlotID uint
	// MaxRwSessionCount is what the token reports: 0 means effectively
	// infinite, ^uint(0) unknown.
	MaxRwSessionCount uint
	// PoolSize is the number of sessions the Token uses at most: the
	// requested size clamped to MaxRwSessionCount.
	PoolSize int
	// LoginRequired reports whether the Token logs in as the user.
	LoginRequired bool
	// ModulePath is the PKCS#11 module as it was given (WithModulePath,
	// the URI's module-path) or found (DefaultModulePath), symlinks not
	// resolved: what references naming the token should say.
	ModulePath string
}

// Token is an open, logged-in PKCS#11 token: a module reference, a pool of
// read-write sessions, and the user login. It creates, finds, imports and
// deletes keys, and runs their ECDH operations.
//
// A Token is safe for concurrent use. Its operations take a
// context.Context: waiting for a free session honours cancellation; a call
// already inside the module runs to completion (PKCS#11 calls cannot be
// interrupted); [WithAbandonOnCancel] lets ECDH return on time anyway.
//
// When the module reports that sessions are gone (CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED), the token went away (CKR_DEVICE_REMOVED,
// CKR_TOKEN_NOT_PRESENT) or the module was finalised
// (CKR_CRYPTOKI_NOT_INITIALIZED), or another Token of the process
// initialised the module again, the Token recovers: it initialises the
// module again if needed, finds its token again by label, serial,
// manufacturer and model (never by slot id), opens new sessions, logs in
// again, and keys find their objects again by CKA_ID. A lost login
// (CKR_USER_NOT_LOGGED_IN) is logged in again, a stale object handle is
// found again, and CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED (which
// SoftHSM2 gives now and then under concurrent use) are retried after a
// pause. It retries at most the configured number of times
// ([WithMaxRetries]) and then fails with [ErrTokenUnavailable].
type Token struct {
	mod *module
	o   options

	pin       string // never printed
	needLogin bool
	info      TokenInfo

	mu        sync.Mutex // serialises recoveries and the mechanism cache
	slot      atomic.Uint64
	gen       atomic.Uint64
	modGen    atomic.Uint64 // the module generation (moduleState.gen) of the sessions
	mechs     map[uint]bool
	montRoute atomic.Int32 // route that made or took a Montgomery key, 0 if none yet
	// peerWrapped is set once the token refused a raw peer point in
	// CK_ECDH1_DERIVE_PARAMS and accepted a DER-wrapped one.
	peerWrapped atomic.Bool

	pool *sessionPool

	closeMu sync.RWMutex
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// OpenToken opens the module and the token an RFC 7512 URI names and logs
// in. The module comes from [WithModulePath], else the URI's module-path,
// else p11-kit's proxy module ([DefaultModulePath]); the PIN from
// [WithPIN], [WithPINEnv], [WithPINFile], the URI's pin-value or
// pin-source, in that order, else from [WithPINFunc] once the token is
// found. A token that requires login with no PIN given fails with
// [ErrPINSource]; a wrong PIN with [ErrPINIncorrect]; no matching token
// with [ErrTokenNotFound]. Key attributes in the URI (id, object) are
// ignored here.
//
// Close the Token when done; it releases its sessions and its module
// reference.
func OpenToken(ctx context.Context, uri string, opts ...Option) (*Token, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return openToken(ctx, u, o)
}

// modulePath returns the module the options or the URI name, or the
// default module (p11-kit's proxy), never anything else.
func modulePath(u *URI, o options) (string, error) {
	path := o.modulePath
	if path == "" {
		path = u.ModulePath
	}
	if path == "" {
		return DefaultModulePath()
	}
	return path, nil
}

// openSlot opens the module the options or the URI name and finds the token
// the URI selects in it. The caller closes the module.
func openSlot(ctx context.Context, u *URI, o options) (*module, uint, p11.TokenInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, p11.TokenInfo{}, err
	}
	path, err := modulePath(u, o)
	if err != nil {
		return nil, 0, p11.TokenInfo{}, err
	}
	mod, err := openModule(path)
	if err != nil {
		return nil, 0, p11.TokenInfo{}, err
	}
	slot, ti, err := mod.findToken(u.Token)
	if err != nil {
		mod.Close()
		return nil, 0, p11.TokenInfo{}, err
	}
	return mod, slot, ti, nil
}

func openToken(ctx context.Context, u *URI, o options) (*Token, error) {
	mod, slot, ti, err := openSlot(ctx, u, o)
	if err != nil {
		return nil, err
	}
	t := &Token{mod: mod, o: o, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			mod.Close()
		}
	}()

	pin, havePIN, err := resolvePIN(&o, u)
	if err != nil {
		return nil, err
	}
	size := o.poolSize
	if m := ti.MaxRwSessionCount; m != p11.CK_EFFECTIVELY_INFINITE && m != p11.CK_UNAVAILABLE_INFORMATION && uint(size) > m {
		size = int(m)
	}
	t.info = TokenInfo{
		Label: ti.Label, Serial: ti.SerialNumber, Manufacturer: ti.ManufacturerID, Model: ti.Model,
		SlotID: slot, MaxRwSessionCount: ti.MaxRwSessionCount, PoolSize: size,
		ModulePath: mod.Path(),
	}
	loginRequired := ti.Flags&p11.CKF_LOGIN_REQUIRED != 0
	switch {
	case havePIN:
		t.pin, t.needLogin = pin, true
	case loginRequired && ti.Flags&p11.CKF_PROTECTED_AUTHENTICATION_PATH != 0:
		t.needLogin = true // the PIN is entered on the device
	case loginRequired && o.pinFunc != nil:
		if t.pin, err = askPIN(&o, t.info); err != nil {
			return nil, err
		}
		t.needLogin = true
	case loginRequired:
		return nil, fmt.Errorf("%w: token %q requires login and no PIN was given (a pin-source in the URI, or a PIN option)", ErrPINSource, ti.Label)
	}
	t.info.LoginRequired = t.needLogin
	t.slot.Store(uint64(slot))
	t.gen.Store(1)
	t.modGen.Store(mod.st.gen.Load())
	t.pool = newSessionPool(size)

	// Open the first session and log in now, so that a wrong PIN fails here.
	s, err := t.openSession()
	if err != nil {
		return nil, err
	}
	t.pool.push(s)
	ok = true
	return t, nil
}

func (t *Token) ctx() *p11.Ctx { return t.mod.st.ctx }

// Info describes the token. SlotID is the current slot.
func (t *Token) Info() TokenInfo {
	i := t.info
	i.SlotID = uint(t.slot.Load())
	return i
}

// Close waits for running operations, closes the Token's sessions (never
// C_CloseAllSessions, never C_Logout, so other users of the token in the
// process are not disturbed, although closing the process's last session
// ends its login) and releases the module. Keys of the Token stop working.
// Close is idempotent.
func (t *Token) Close() error {
	t.closeMu.Lock()
	if t.closed {
		t.closeMu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	t.closeMu.Unlock()
	t.wg.Wait()
	for _, s := range t.pool.drain() {
		t.closeSession(s)
	}
	return t.mod.Close()
}

// enter registers a running operation, or reports that the Token is closed.
func (t *Token) enter() bool {
	t.closeMu.RLock()
	defer t.closeMu.RUnlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

// findToken returns the slot of the one initialised token matching sel.
func (m *module) findToken(sel TokenSelector) (uint, p11.TokenInfo, error) {
	c := m.st.ctx
	if sel.LibraryManufacturer != "" || sel.LibraryDescription != "" || sel.LibraryVersion != "" {
		info, err := c.GetInfo()
		if err != nil {
			return 0, p11.TokenInfo{}, fmt.Errorf("pkcs11: C_GetInfo: %w", err)
		}
		lm, ld := trimField(info.ManufacturerID), trimField(info.LibraryDescription)
		lv := info.LibraryVersion
		if !fieldMatch(sel.LibraryManufacturer, lm) || !fieldMatch(sel.LibraryDescription, ld) || !versionMatch(sel.LibraryVersion, lv) {
			return 0, p11.TokenInfo{}, fmt.Errorf("%w: module %s is %q/%q version %d.%d, not the library the URI names",
				ErrTokenNotFound, m.Path(), lm, ld, lv.Major, lv.Minor)
		}
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, p11.TokenInfo{}, fmt.Errorf("pkcs11: C_GetSlotList: %w", err)
	}
	type match struct {
		slot uint
		ti   p11.TokenInfo
	}
	var matches []match
	var seen []string
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil || ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		ti.Label = trimField(ti.Label)
		ti.SerialNumber = trimField(ti.SerialNumber)
		ti.ManufacturerID = trimField(ti.ManufacturerID)
		ti.Model = trimField(ti.Model)
		seen = append(seen, fmt.Sprintf("%q (serial %s)", ti.Label, ti.SerialNumber))
		if !sel.matches(ti.Label, ti.SerialNumber, ti.ManufacturerID, ti.Model) {
			continue
		}
		if sel.SlotID != nil && *sel.SlotID != s {
			continue
		}
		if sel.SlotDescription != "" || sel.SlotManufacturer != "" {
			si, err := c.GetSlotInfo(s)
			if err != nil || !fieldMatch(sel.SlotDescription, trimField(si.SlotDescription)) ||
				!fieldMatch(sel.SlotManufacturer, trimField(si.ManufacturerID)) {
				continue
			}
		}
		matches = append(matches, match{s, ti})
	}
	switch len(matches) {
	case 1:
		return matches[0].slot, matches[0].ti, nil
	case 0:
		avail := "none"
		if len(seen) > 0 {
			avail = strings.Join(seen, ", ")
		}
		return 0, p11.TokenInfo{}, fmt.Errorf("%w: nothing matches %s in %s (initialised tokens: %s)", ErrTokenNotFound, sel.describe(), m.Path(), avail)
	default:
		var names []string
		for _, m := range matches {
			names = append(names, fmt.Sprintf("%q (serial %s)", m.ti.Label, m.ti.SerialNumber))
		}
		return 0, p11.TokenInfo{}, fmt.Errorf("%w: %s matches %s; add token= or serial= to the URI", ErrTokenAmbiguous, sel.describe(), strings.Join(names, ", "))
	}
}

func trimField(s string) string { return strings.TrimRight(s, " \x00") }

func fieldMatch(want, have string) bool { return want == "" || want == have }

// versionMatch reports whether a library-version (checked by ParseURI)
// names version have, or is empty.
func versionMatch(want string, have p11.Version) bool {
	if want == "" {
		return true
	}
	v, err := parseVersion(want)
	return err == nil && v == have
}

// matches reports whether a token with these label, serial, manufacturer
// and model fits the selector's token attributes.
func (s TokenSelector) matches(label, serial, manufacturer, model string) bool {
	return fieldMatch(s.Label, label) && fieldMatch(s.Serial, serial) &&
		fieldMatch(s.Manufacturer, manufacturer) && fieldMatch(s.Model, model)
}

// selector selects this token again after a recovery: label, serial,
// manufacturer and model as found at open, never the slot id.
func (t *Token) selector() TokenSelector {
	return TokenSelector{Label: t.info.Label, Serial: t.info.Serial, Manufacturer: t.info.Manufacturer, Model: t.info.Model}
}

// describe renders the selector for messages.
func (s TokenSelector) describe() string {
	u := URI{Token: s}
	d := strings.TrimPrefix(u.String(), "pkcs11:")
	if d == "" {
		return "any token"
	}
	return d
}

// openSession opens a read-write session on the current slot and logs in.
func (t *Token) openSession() (*session, error) {
	s := &session{gen: t.gen.Load()}
	if err := t.mod.st.openSession(uint(t.slot.Load()), p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION, s); err != nil {
		return nil, fmt.Errorf("pkcs11: open session on token %q: %w", t.info.Label, err)
	}
	if err := t.login(s.h); err != nil {
		t.closeSession(s)
		return nil, err
	}
	return s, nil
}

// login logs in as the user on session h, if the token needs a login. All
// of the process's sessions with the token share one login, so
// CKR_USER_ALREADY_LOGGED_IN is fine.
func (t *Token) login(h p11.SessionHandle) error {
	if !t.needLogin {
		return nil
	}
	if err := t.ctx().Login(h, p11.CKU_USER, t.pin); err != nil && !isCKR(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
		return loginError(t.info.Label, err)
	}
	return nil
}

// closeSession closes s unless its number is no longer its own (see
// moduleState.owners): it died and the module handed the number out again.
func (t *Token) closeSession(s *session) { t.mod.st.closeSession(s) }

// getSession takes a session from the pool, opening one if none is idle;
// it waits for a free slot while respecting ctx.
func (t *Token) getSession(ctx context.Context) (*session, error) {
	if err := t.pool.acquire(ctx, t.done); err != nil {
		return nil, err
	}
	gen := t.gen.Load()
	for {
		s := t.pool.pop()
		if s == nil {
			break
		}
		if s.gen == gen {
			return s, nil
		}
		t.closeSession(s) // from before a recovery, see putSession
	}
	s, err := t.openSession()
	if err != nil {
		t.pool.release()
		return nil, err
	}
	return s, nil
}

// putSession returns a session after an operation that ended with err. A
// session the module declared dead is forgotten without C_CloseSession (the
// module may hand its number out again, and closing that would close a
// live session); one from before a recovery that the operation could use
// is closed, so that a recovery from one dead session leaves no other
// session open behind it.
func (t *Token) putSession(s *session, err error) {
	defer t.pool.release()
	switch rec := classify(err); {
	case rec == recoverSession || rec == recoverModule:
		t.mod.st.forgetSession(s)
	case s.gen != t.gen.Load():
		t.closeSession(s) // before the deferred release: the slot covers it until closed
	default:
		t.pool.push(s)
	}
}

// do runs fn on a pooled session, recovering and retrying (a bounded number
// of times) after recoverable failures. fn must return errors from the
// module wrapped with %w so they can be classified.
func (t *Token) do(ctx context.Context, op string, fn func(*session) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !t.enter() {
		return fmt.Errorf("pkcs11: %s: %w", op, ErrClosed)
	}
	defer t.wg.Done()
	var (
		last        error
		needRecover recovery
		failGen     uint64
	)
	attempts := t.o.maxRetries + 1
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			if err := t.backoff(ctx, attempt, last); err != nil {
				return err
			}
		}
		if needRecover == recoverNone && t.mod.st.gen.Load() != t.modGen.Load() {
			// Another Token initialised the module again: our sessions
			// and object handles are dead, and their numbers reused.
			needRecover, failGen = recoverSession, t.gen.Load()
		}
		if needRecover != recoverNone {
			if err := t.recover(needRecover, failGen); err != nil {
				if classify(err) == recoverModule {
					needRecover = recoverModule
				}
				last = err
				continue
			}
			needRecover = recoverNone
		}
		s, err := t.getSession(ctx)
		if err == nil {
			failGen = s.gen
			err = fn(s)
			if err != nil && classify(err) == recoverLogin {
				// Someone logged the process out (C_Logout).
				if lerr := t.login(s.h); lerr != nil {
					err = lerr
				}
			}
			t.putSession(s, err)
			if err == nil {
				return nil
			}
		} else {
			failGen = t.gen.Load()
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		rec := classify(err)
		if rec == recoverNone {
			return err
		}
		last, needRecover = err, rec
		t.o.logger.Warn("pkcs11: recovering", "token", t.info.Label, "op", op, "cause", causeName(err), "attempt", attempt+1, "of", attempts)
	}
	// Out of attempts: still leave the Token recovered for the next call.
	if needRecover != recoverNone {
		_ = t.recover(needRecover, failGen)
	}
	return fmt.Errorf("%w: token %q: %s gave up after %d attempts: %w", ErrTokenUnavailable, t.info.Label, op, attempts, last)
}

// backoff pauses before a retry, except after a failure the Token has
// already dealt with (lost sessions, login or initialisation, a stale
// handle), which is retried at once.
func (t *Token) backoff(ctx context.Context, attempt int, cause error) error {
	switch ckr(cause) {
	case p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED, p11.CKR_USER_NOT_LOGGED_IN,
		p11.CKR_CRYPTOKI_NOT_INITIALIZED, p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID:
		return ctx.Err()
	}
	d := 20 * time.Millisecond << (attempt - 1)
	if d > 500*time.Millisecond {
		d = 500 * time.Millisecond
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.done:
		return ErrClosed
	}
}

// recover brings the Token back after its sessions died in generation gen:
// re-initialise the module if needed, close the idle sessions (see
// putSession), find the token again, and start a new generation (new
// sessions log in again; keys find their handles again). Only one
// goroutine recovers a generation. A stale handle, a lost login or a
// transient failure needs nothing of the Token: the operation finds its
// handle again, logs in again or is simply tried again.
func (t *Token) recover(rec recovery, gen uint64) error {
	if rec != recoverSession && rec != recoverModule {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gen.Load() != gen {
		return nil // someone else recovered already
	}
	// The idle sessions are closed where they are still alive and still
	// ours: when one session died, the others usually did not.
	for _, s := range t.pool.drain() {
		t.closeSession(s)
	}
	st := t.mod.st
	if rec == recoverModule {
		if err := t.mod.ensureInitialized(); err != nil {
			return err
		}
	}
	modGen := st.gen.Load()
	slot, _, err := t.mod.findToken(t.selector())
	if isCKR(err, p11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		if err := t.mod.ensureInitialized(); err != nil {
			return err
		}
		modGen = st.gen.Load()
		slot, _, err = t.mod.findToken(t.selector())
	}
	if err != nil {
		return err
	}
	t.modGen.Store(modGen)
	t.slot.Store(uint64(slot))
	t.mechs = nil
	t.gen.Add(1)
	t.o.logger.Info("pkcs11: token recovered", "token", t.info.Label, "slot", slot)
	return nil
}

// causeName names the PKCS#11 return value in err, for logs.
func causeName(err error) string {
	if v := ckr(err); v != 0 {
		return p11.Error(v).Error()
	}
	return err.Error()
}

// mechanisms returns the token's mechanism list (cached per generation).
func (t *Token) mechanisms() (map[uint]bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mechs != nil {
		return t.mechs, nil
	}
	list, err := t.ctx().GetMechanismList(uint(t.slot.Load()))
	if err != nil {
		return nil, fmt.Errorf("pkcs11: C_GetMechanismList: %w", err)
	}
	m := make(map[uint]bool, len(list))
	for _, x := range list {
		m[x.Mechanism] = true
	}
	t.mechs = m
	return m, nil
}
