package keystore

import "errors"

// Errors that every store returns (wrapped, with the backend's own error
// beside them), for callers to test with errors.Is.
var (
	// ErrInvalidRef: the reference is malformed, names an attribute its
	// scheme does not define, or does not fit the operation.
	ErrInvalidRef = errors.New("keystore: invalid key reference")
	// ErrUnknownScheme: no store is registered for the reference's scheme.
	ErrUnknownScheme = errors.New("keystore: unknown reference scheme")
	// ErrInlineSecret: the reference carries a secret (pin-value).
	// References are command-line arguments and log fields; name a
	// source instead (pin-source=file:PATH or env:NAME).
	ErrInlineSecret = errors.New("keystore: a secret in a key reference")
	// ErrNotFound: no key where the reference points.
	ErrNotFound = errors.New("keystore: key not found")
	// ErrExists: a key (or file) already exists where one is to be made.
	ErrExists = errors.New("keystore: key already exists")
	// ErrUnsupported: the backend cannot make or use such a key (a KEM
	// the token lacks, an ML-KEM key in a TPM).
	ErrUnsupported = errors.New("keystore: not supported by this backend")
	// ErrSecretRequired: the key needs a PIN or auth value and none was
	// given. Stores return it before they try the key, so that no attempt
	// counts towards a lockout.
	ErrSecretRequired = errors.New("keystore: a PIN or auth value is required")
	// ErrAuth: the backend refused the PIN or auth value (or is locked).
	ErrAuth = errors.New("keystore: authentication failed")
	// ErrUnavailable: the device cannot be reached.
	ErrUnavailable = errors.New("keystore: device unavailable")
)
