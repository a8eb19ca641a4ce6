package pkcs11

import (
	"errors"
	"fmt"

	p11 "github.com/miekg/pkcs11"
)

// Sentinel errors. Every error from this package wraps one of these (or a
// [kem.ErrInvalidPublicKey], a context error, or a PKCS#11 return value of
// type [github.com/miekg/pkcs11.Error]) so callers can test it with
// errors.Is; the message adds what was being done. No error ever contains a
// PIN, key material or a shared secret.
var (
	// ErrModuleNotFound: the PKCS#11 module file does not exist, or no
	// module path was given and p11-kit's proxy module, the default, is
	// not installed.
	ErrModuleNotFound = errors.New("pkcs11: module not found")
	// ErrModuleLoad: the module file exists but could not be loaded as a
	// PKCS#11 library (dlopen or C_GetFunctionList failed).
	ErrModuleLoad = errors.New("pkcs11: module cannot be loaded")
	// ErrTokenNotFound: no initialised token matches the URI's token
	// attributes (token, serial, manufacturer, model, slot-id, ...).
	ErrTokenNotFound = errors.New("pkcs11: token not found")
	// ErrTokenAmbiguous: more than one token matches; add token= or serial=.
	ErrTokenAmbiguous = errors.New("pkcs11: more than one token matches")
	// ErrTokenUnavailable: the token could not be reached again after the
	// bounded number of recovery attempts (removed, module finalised, ...).
	ErrTokenUnavailable = errors.New("pkcs11: token unavailable")
	// ErrPINIncorrect: the token rejected the PIN (CKR_PIN_INCORRECT,
	// CKR_PIN_INVALID or CKR_PIN_LEN_RANGE).
	ErrPINIncorrect = errors.New("pkcs11: PIN incorrect")
	// ErrPINLocked: the token locked the user PIN (CKR_PIN_LOCKED) or it
	// expired (CKR_PIN_EXPIRED).
	ErrPINLocked = errors.New("pkcs11: PIN locked or expired")
	// ErrPINSource: a PIN was asked for but could not be obtained: the
	// pin-source file is missing, unreadable or empty, the named environment
	// variable is unset or empty, or no PIN source was given at all.
	ErrPINSource = errors.New("pkcs11: PIN unavailable")
	// ErrKeyNotFound: no private key on the token matches the id/label.
	ErrKeyNotFound = errors.New("pkcs11: key not found")
	// ErrKeyAmbiguous: more than one private key matches the id/label.
	ErrKeyAmbiguous = errors.New("pkcs11: more than one key matches")
	// ErrKeyExists: a key with the requested CKA_ID already exists.
	ErrKeyExists = errors.New("pkcs11: a key with this id already exists")
	// ErrKeyNotDerivable: the private key lacks CKA_DERIVE=true, so it
	// cannot do ECDH.
	ErrKeyNotDerivable = errors.New("pkcs11: key not usable for derivation (CKA_DERIVE is false)")
	// ErrKeyExtractable: strict mode is on and the key is extractable
	// (CKA_EXTRACTABLE=true) or not sensitive (CKA_SENSITIVE=false).
	ErrKeyExtractable = errors.New("pkcs11: key can leave the token")
	// ErrUnsupportedKeyType: the key is of a type or curve no HPKE KEM uses
	// (RSA, Ed25519, secp256k1, ...), or the token cannot make such keys.
	ErrUnsupportedKeyType = errors.New("pkcs11: unsupported key type")
	// ErrPublicKeyNotFound: the private key was found but its public key
	// could not be read (no public key object with the same CKA_ID and no
	// public key attribute on the private key).
	ErrPublicKeyNotFound = errors.New("pkcs11: public key not found")
	// ErrInvalidURI: the RFC 7512 URI is malformed or names an attribute in a
	// way this package does not accept.
	ErrInvalidURI = errors.New("pkcs11: invalid URI")
	// ErrClosed: the Token or Key was closed.
	ErrClosed = errors.New("pkcs11: closed")
)

// ckr returns the PKCS#11 return value in err, or 0 when there is none.
// A nil err costs nothing (the ECDH path classifies every outcome).
func ckr(err error) uint {
	if err == nil {
		return 0
	}
	var e p11.Error
	if errors.As(err, &e) {
		return uint(e)
	}
	return 0
}

// isCKR reports whether err carries the PKCS#11 return value rv.
func isCKR(err error, rv uint) bool { return err != nil && ckr(err) == rv }

// recovery classifies an error from the module: what must be redone before
// the operation can be tried again ([Token.do] logs in again,
// [Token.recover] does the rest).
type recovery int

const (
	recoverNone    recovery = iota // not recoverable: report it
	recoverRetry                   // try again as is: a transient failure
	recoverHandle                  // try again; the operation finds its object handle again
	recoverLogin                   // log in again (all sessions share the login), then try again
	recoverSession                 // reopen sessions and log in again
	recoverModule                  // C_Initialize again, then reopen sessions
)

func classify(err error) recovery {
	switch ckr(err) {
	case p11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return recoverModule
	case p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED,
		p11.CKR_DEVICE_REMOVED, p11.CKR_TOKEN_NOT_PRESENT:
		return recoverSession
	case p11.CKR_USER_NOT_LOGGED_IN:
		return recoverLogin
	case p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID:
		return recoverHandle
	case p11.CKR_GENERAL_ERROR, p11.CKR_FUNCTION_FAILED:
		// SoftHSM's file object store fails now and then under concurrent
		// use of one object (seen: 1 derive in a few hundred with 8
		// goroutines). Inputs are validated before they reach the token,
		// so these are retried a bounded number of times.
		return recoverRetry
	}
	return recoverNone
}

// loginError maps a C_Login failure onto the sentinels. The token label is
// named; the PIN never is.
func loginError(label string, err error) error {
	switch ckr(err) {
	case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE:
		return fmt.Errorf("pkcs11: login to token %q: %w: %w", label, ErrPINIncorrect, err)
	case p11.CKR_PIN_LOCKED, p11.CKR_PIN_EXPIRED:
		return fmt.Errorf("pkcs11: login to token %q: %w: %w", label, ErrPINLocked, err)
	}
	return fmt.Errorf("pkcs11: login to token %q: %w", label, err)
}
