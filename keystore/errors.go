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

// KindError is an error of a backend's store classified under a keystore
// sentinel: its text is the backend's error's, and it matches both the
// sentinel (Kind) and the backend's own errors (errors.Is, errors.As).
type KindError struct {
	Kind error // a sentinel of this package, such as ErrNotFound
	Err  error
}

func (e *KindError) Error() string   { return e.Err.Error() }
func (e *KindError) Unwrap() []error { return []error{e.Kind, e.Err} }

// ErrorKind maps a backend's error onto the sentinel it is.
type ErrorKind struct{ Backend, Store error }

// Classify returns err so that it matches the Store sentinel of the first
// kind whose Backend error it matches: as it is when it matches that
// sentinel already or is a *KindError, wrapped in a *KindError otherwise,
// and unchanged when no kind fits. Stores use it on every error of their
// backend so that callers test errors.Is(err, keystore.ErrNotFound) and so
// on whatever the scheme.
func Classify(err error, kinds []ErrorKind) error {
	if err == nil {
		return nil
	}
	var ke *KindError
	if errors.As(err, &ke) {
		return err
	}
	for _, k := range kinds {
		if errors.Is(err, k.Backend) {
			if errors.Is(err, k.Store) {
				return err
			}
			return &KindError{Kind: k.Store, Err: err}
		}
	}
	return err
}
