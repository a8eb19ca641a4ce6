package softhsm

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// ErrModuleInUse is returned by [Env.InitToken] when the SoftHSM2 module is
// already initialised in this process (by package hsm/pkcs11, say): SoftHSM
// read its configuration at that time, so a token made now could land in
// another Env. Close every user of the module first.
var ErrModuleInUse = errors.New("softhsm: module already initialised in this process")

// Token describes a token made by [Env.InitToken].
type Token struct {
	// Label is the token label (CKA_LABEL of the token, RFC 7512 "token").
	Label string
	// Serial is the serial number SoftHSM assigned (RFC 7512 "serial"); it is
	// stable across processes, unlike SlotID.
	Serial string
	// SlotID is the slot the token was in when it was made. SoftHSM derives it
	// from the serial, but other modules renumber slots between processes:
	// select tokens by label or serial.
	SlotID uint
}

// MinPINLen and MaxPINLen are SoftHSM2's PIN length limits.
const (
	MinPINLen = 4
	MaxPINLen = 255
)

var (
	ctxMu sync.Mutex
	ctxs  = map[string]*p11.Ctx{}
)

// loadModule loads the module at path once per process and never unloads it:
// unloading a library that links OpenSSL and loading it again is not safe.
func loadModule(path string) (*p11.Ctx, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	ctxMu.Lock()
	defer ctxMu.Unlock()
	if c, ok := ctxs[real]; ok {
		return c, nil
	}
	c := p11.New(real)
	if c == nil {
		return nil, fmt.Errorf("softhsm: cannot load PKCS#11 module %s", real)
	}
	ctxs[real] = c
	return c, nil
}

// InitToken initialises a new token in the Env through PKCS#11 (C_InitToken
// on SoftHSM's free slot, then C_InitPIN as the security officer), so no PIN
// ever appears on a command line. modulePath "" means [FindModule]("").
//
// SoftHSM reads SOFTHSM2_CONF at C_Initialize, so the Env must be active
// ([Env.Activate] or t.Setenv) and the module must not be initialised in this
// process at the time ([ErrModuleInUse]); InitToken finalises the module
// before it returns. PINs must be 4 to 255 bytes long. Errors never contain a
// PIN.
func (e *Env) InitToken(modulePath, label, soPIN, userPIN string) (Token, error) {
	if label == "" || len(label) > 32 {
		return Token{}, fmt.Errorf("softhsm: token label must be 1 to 32 bytes long, got %d", len(label))
	}
	for _, p := range []struct{ name, pin string }{{"SO PIN", soPIN}, {"user PIN", userPIN}} {
		if len(p.pin) < MinPINLen || len(p.pin) > MaxPINLen {
			return Token{}, fmt.Errorf("softhsm: %s must be %d to %d bytes long", p.name, MinPINLen, MaxPINLen)
		}
	}
	if !e.Active() {
		return Token{}, fmt.Errorf("%w: %s must be %s (call Activate, or t.Setenv in tests)", ErrConfNotActive, ConfEnv, e.ConfPath)
	}
	path, err := FindModule(modulePath)
	if err != nil {
		return Token{}, err
	}
	c, err := loadModule(path)
	if err != nil {
		return Token{}, err
	}
	if err := c.Initialize(); err != nil {
		if errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			return Token{}, fmt.Errorf("%w (close every Module/Token using %s, then retry)", ErrModuleInUse, path)
		}
		return Token{}, fmt.Errorf("softhsm: C_Initialize: %w", err)
	}
	defer c.Finalize()

	free, err := freeSlot(c)
	if err != nil {
		return Token{}, err
	}
	if err := c.InitToken(free, soPIN, label); err != nil {
		return Token{}, fmt.Errorf("softhsm: C_InitToken: %w", err)
	}
	// SoftHSM moves a freshly initialised token to a slot numbered after its
	// serial, so look for it again.
	slot, err := newTokenSlot(c, label)
	if err != nil {
		return Token{}, err
	}
	sh, err := c.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return Token{}, fmt.Errorf("softhsm: C_OpenSession: %w", err)
	}
	defer c.CloseSession(sh)
	if err := c.Login(sh, p11.CKU_SO, soPIN); err != nil {
		return Token{}, fmt.Errorf("softhsm: C_Login as SO: %w", err)
	}
	defer c.Logout(sh)
	if err := c.InitPIN(sh, userPIN); err != nil {
		return Token{}, fmt.Errorf("softhsm: C_InitPIN: %w", err)
	}
	ti, err := c.GetTokenInfo(slot)
	if err != nil {
		return Token{}, fmt.Errorf("softhsm: C_GetTokenInfo: %w", err)
	}
	return Token{Label: ti.Label, Serial: ti.SerialNumber, SlotID: slot}, nil
}

// freeSlot returns SoftHSM's slot with an uninitialised token.
func freeSlot(c *p11.Ctx) (uint, error) {
	s, ok, err := findSlot(c, func(ti p11.TokenInfo) bool { return ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 })
	if err == nil && !ok {
		err = errors.New("softhsm: no free slot (is this module really SoftHSM2?)")
	}
	return s, err
}

// newTokenSlot finds the initialised token with label whose user PIN is not
// set yet: the one C_InitToken just made.
func newTokenSlot(c *p11.Ctx, label string) (uint, error) {
	s, ok, err := findSlot(c, func(ti p11.TokenInfo) bool {
		return ti.Label == label && ti.Flags&p11.CKF_TOKEN_INITIALIZED != 0 && ti.Flags&p11.CKF_USER_PIN_INITIALIZED == 0
	})
	if err == nil && !ok {
		err = fmt.Errorf("softhsm: token %q not found after C_InitToken", label)
	}
	return s, err
}

// findSlot returns the first slot with a token for which match is true.
func findSlot(c *p11.Ctx, match func(p11.TokenInfo) bool) (uint, bool, error) {
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, false, fmt.Errorf("softhsm: C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && match(ti) {
			return s, true, nil
		}
	}
	return 0, false, nil
}
