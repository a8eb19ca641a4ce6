// Package keystore is the one interface behind every twoway-hsm command
// that touches keys: create, import, list, show, delete, read the public
// key, and open a key for use. Each backend (a PKCS#11 token, a TPM 2.0, a
// software key file for development) implements [Store] in a package of
// its own and registers it under its reference scheme; callers pick the
// store once, from the reference, with [For]:
//
//	st, err := keystore.For("pkcs11:token=gw;id=%01?module-path=...&pin-source=file:/etc/twoway/gw.pin")
//	info, err := st.Show(ctx, ref, nil)
//
// Package keystore/all registers the built-in stores.
//
// References follow one grammar (package keystore/keyref) and name their
// secrets by source (package keystore/secret): pin-source= for PKCS#11,
// auth-source= for TPM keys. A pin-value in a reference is refused by
// every store ([ErrInlineSecret]); a caller that has the secret some other
// way (a terminal prompt) passes it through [Options.Secret].
package keystore

import (
	"context"
	"io"
	"log/slog"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// Store is one backend's keys, named by references of its scheme. Every
// method parses its reference first and fails with an error wrapping
// [ErrInvalidRef] before it touches a device when the reference is
// malformed or does not fit the method (a list reference given to Show).
// A Store is safe for concurrent use.
type Store interface {
	// Create generates a key for the KEM where ref says and describes it.
	// An existing key there is an error wrapping [ErrExists].
	Create(ctx context.Context, ref string, id kem.ID, o *Options) (*KeyInfo, error)
	// Import stores an existing private key where ref says, as a key the
	// backend will not let out again where it can (PKCS#11: sensitive,
	// not extractable; TPM: wrapped to this TPM). It does not wipe m.
	Import(ctx context.Context, ref string, m *Material, o *Options) (*KeyInfo, error)
	// List lists the keys ref names a container of (a token, a TPM's
	// persistent handles, a directory), usable or not.
	List(ctx context.Context, ref string, o *Options) (*Listing, error)
	// Show describes the one key ref names, usable or not.
	Show(ctx context.Context, ref string, o *Options) (*KeyInfo, error)
	// Delete deletes the key ref names after confirm has seen it and
	// returned nil. It never deletes anything that is not a key of this
	// backend.
	Delete(ctx context.Context, ref string, confirm func(*KeyInfo) error, o *Options) (*Deletion, error)
	// Public returns the KEM and public key of the key ref names with the
	// least privilege that works (without a PIN or auth value where the
	// backend allows it), for publishing key configurations.
	Public(ctx context.Context, ref string, o *Options) (kem.ID, []byte, error)
	// Check reports, without touching any device or file, whether ref is
	// a well-formed reference to one key, as Open takes: callers that
	// hand references on (a gateway starting its plugin) refuse a typo
	// before anything starts.
	Check(ref string) error
	// Open opens the key for use. The key stays in its backend: Open
	// never reads private key material into this process, except for the
	// development-only software store.
	Open(ctx context.Context, ref string, o *Options) (Key, error)
}

// Key is a key opened for use: it decapsulates (and, for Diffie-Hellman
// KEMs, also implements kem.Exchanger) until it is closed.
type Key interface {
	kem.PrivateKey
	io.Closer
}

// Options are what a caller adds to a reference. A nil *Options is the
// zero Options.
type Options struct {
	// Secret supplies the PIN or auth value when the reference names no
	// source of its own; what says which secret, for a prompt ("PIN for
	// token gw"). Stores call it at most once per operation and only
	// when they need a secret. The store clears the returned bytes after
	// use. Nil: a secret that is needed and has no source is an error.
	Secret func(what string) ([]byte, error)
	// Logger receives the backend's events (recoveries, reconnects).
	// Nothing secret is logged. Nil discards them.
	Logger *slog.Logger
}

// Log returns the logger to use: o.Logger, or one that discards.
func (o *Options) Log() *slog.Logger {
	if o == nil || o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// SecretFunc returns o.Secret, or nil.
func (o *Options) SecretFunc() func(string) ([]byte, error) {
	if o == nil {
		return nil
	}
	return o.Secret
}

// KeyInfo describes one key, for people and for scripts.
type KeyInfo struct {
	// Ref is the reference to give a plugin or a server: the key's own
	// canonical reference with its secret source, never a secret.
	Ref     string
	Backend string // the scheme
	// KEM and PublicKey are zero when the key serves no HPKE KEM.
	KEM       kem.ID
	PublicKey []byte
	// Usable says whether a plugin can serve the key; Problem says why
	// not, and what to do about it where something can be done.
	Usable  bool
	Problem string
	// Name is how the key is told apart in a listing: "id 01 (gw)", a
	// persistent handle, a file.
	Name string
	// Attributes are short words for a listing: "sensitive", "derive",
	// "fixedTPM", "needs auth".
	Attributes []string
	// Fields are the backend's details as name-value lines, for people.
	Fields []Field
	// Details are the same details for scripts: a struct that marshals
	// to JSON with stable field names.
	Details any
}

// Field is one line of a key's details.
type Field struct {
	Name, Value string
}

// Listing is the result of List.
type Listing struct {
	Backend string
	// Title says what was listed: "token "gw" (serial ..., SoftHSM) via
	// /usr/lib/softhsm/libsofthsm2.so".
	Title string
	// Details describe the container for scripts (JSON), or nil.
	Details any
	Keys    []*KeyInfo
}

// Deletion is the result of Delete.
type Deletion struct {
	// Deleted lists what was removed, one phrase each ("key file
	// /etc/twoway/gw.pem", "persistent handle 0x81000010").
	Deleted []string
	Key     *KeyInfo
}
