package pkcs11

import (
	"fmt"

	"github.com/twoway-hsm/twoway-hsm/keystore/secret"
)

// resolvePIN picks the user PIN from the sources given up front:
// WithPIN, then WithPINEnv, then WithPINFile, then the URI's pin-value,
// then its pin-source. ok is false when none was given ([WithPINFunc] is
// asked later, once the token is known to need a PIN).
func resolvePIN(o *options, u *URI) (pin string, ok bool, err error) {
	switch {
	case o.pin != nil:
		if *o.pin == "" {
			return "", true, fmt.Errorf("%w: empty PIN given in code", ErrPINSource)
		}
		return *o.pin, true, nil
	case o.pinEnv != "":
		b, err := secret.ReadEnv(o.pinEnv)
		return takePIN(b, err)
	case o.pinFile != "":
		b, err := secret.Read(o.pinFile)
		return takePIN(b, err)
	case u.HasPINValue:
		if u.pinValue == "" {
			return "", true, fmt.Errorf("%w: empty pin-value in URI", ErrPINSource)
		}
		return u.pinValue, true, nil
	case u.PINSource != "":
		b, err := secret.Read(u.PINSource)
		return takePIN(b, err)
	}
	return "", false, nil
}

// takePIN turns a secret read by package keystore/secret (whose errors
// name the source, never its content) into the PIN, clearing the bytes.
func takePIN(b []byte, err error) (string, bool, error) {
	defer clear(b)
	if err != nil {
		return "", true, fmt.Errorf("%w: %w", ErrPINSource, err)
	}
	if len(b) == 0 {
		return "", true, fmt.Errorf("%w: empty PIN", ErrPINSource)
	}
	return string(b), true, nil
}

// askPIN asks o.pinFunc for the PIN of the token ti describes.
func askPIN(o *options, ti TokenInfo) (string, error) {
	b, err := o.pinFunc(ti)
	pin, _, err := takePIN(b, err)
	return pin, err
}
