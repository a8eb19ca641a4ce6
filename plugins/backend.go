package plugins

import (
	"context"
	"errors"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// Backend is what a plugin serves and what a host calls through the
// protocol: the keys it holds and the private-key operations on them. A
// plugin implements it over its hardware ([GRPCServer] serves it); the host
// gets one from [GRPCClient]. Implementations must be safe for concurrent
// use and must honour ctx in every call.
//
// Backend deliberately has no method that creates, imports, deletes or
// exports keys.
type Backend interface {
	// Describe returns the plugin's name and the keys it serves.
	Describe(ctx context.Context) (*Description, error)
	// ECDH performs the Diffie-Hellman step of the DHKEM key named key
	// with the peer's public key (HPKE's SerializePublicKey) and returns
	// the raw DH output, as kem.Exchanger.ECDHContext does. The caller owns
	// the result and should zero it.
	ECDH(ctx context.Context, key string, peer []byte) ([]byte, error)
	// Decapsulate returns the KEM shared secret of the key named key for
	// the encapsulated key enc, for KEMs that are not Diffie-Hellman based.
	// The caller owns the result and should zero it.
	Decapsulate(ctx context.Context, key string, enc []byte) ([]byte, error)
}

// Description is what a plugin says about itself.
type Description struct {
	// Plugin names the plugin program and its version.
	Plugin string
	// Keys are the keys the plugin serves.
	Keys []KeyInfo
}

// KeyInfo describes one key a plugin serves. It holds nothing secret.
type KeyInfo struct {
	// Name is what the host asks for the key by: its reference without
	// the query part (see [KeyName]).
	Name string
	// Backend is the kind of store holding the key: "soft", "pkcs11" or
	// "tpm2".
	Backend string
	// KEM is the key's HPKE KEM.
	KEM kem.ID
	// PublicKey is the public key as HPKE's SerializePublicKey.
	PublicKey []byte
}

// Errors a host sees. Errors from the plugin keep their meaning across the
// boundary: a malformed peer key wraps [kem.ErrInvalidPublicKey], an
// unsupported operation [kem.ErrUnsupportedKEM], a context that ended
// [context.Canceled] or [context.DeadlineExceeded].
var (
	// ErrUnavailable means the plugin process could not be reached: it
	// crashed during the call, could not be started, or is being
	// restarted. The call had no effect and can be retried; the next call
	// starts a new plugin process.
	ErrUnavailable = errors.New("plugins: plugin unavailable")
	// ErrUnknownKey means the plugin serves no key of that name.
	ErrUnknownKey = errors.New("plugins: unknown key")
	// ErrChecksum means the plugin binary's SHA-256 is not the one in
	// Config.Checksum; the binary was not run.
	ErrChecksum = errors.New("plugins: plugin binary checksum mismatch")
	// ErrClosed means the Client was closed.
	ErrClosed = errors.New("plugins: client closed")
	// ErrBackend means the plugin reached its key store but the operation
	// failed there (a token error, a TPM error); the message says what.
	ErrBackend = errors.New("plugins: backend error")
	// ErrAuth means the key store refused the plugin's credentials: a
	// wrong or locked PKCS#11 PIN, a wrong TPM auth value or a TPM in
	// dictionary-attack lockout. Retrying does not help and, for a TPM,
	// brings the lockout closer; fix the configuration instead.
	ErrAuth = errors.New("plugins: key store authentication failed")
)

// StartError is the error of a plugin process that exited while it was
// starting, with the reason it logged (for example that it could not open
// a key: a missing file, a wrong PIN). Err is go-plugin's error, which
// guesses at causes and rarely names the real one.
type StartError struct {
	Path   string // the plugin binary
	Reason string // what the plugin logged before it exited
	Err    error
}

func (e *StartError) Error() string {
	return "plugins: start " + e.Path + ": the plugin exited: " + e.Reason
}

func (e *StartError) Unwrap() error { return e.Err }
