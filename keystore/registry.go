package keystore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
)

// Backend is a store and what callers need to know about its scheme.
type Backend struct {
	// Scheme is the reference scheme the store serves ("pkcs11").
	Scheme string
	// Summary says what the scheme names, for messages: "a PKCS#11
	// token (RFC 7512 URI)".
	Summary string
	// Development marks a store whose keys are not in hardware (soft:):
	// callers print Warning whenever one is used.
	Development bool
	// Warning says what a development store's keys are not, for callers
	// to print.
	Warning string
	// SecretAttr is the query attribute that names the key's secret
	// source ("pin-source", "auth-source"), or "" if its keys have none.
	SecretAttr string
	// SecretRequired says that using any key of the backend takes a
	// secret (a token's user PIN), so that a caller may ask for one up
	// front; otherwise a key needs one only if it says so (a TPM key with
	// an auth value).
	SecretRequired bool
	// Troubleshoot says what to check when a key of this backend cannot
	// be opened, for messages where the error itself has crossed a
	// process boundary and lost its type.
	Troubleshoot string
	// Store is the store.
	Store Store
	// Hint says what to do about an error of this store, or "".
	Hint func(error) string
	// AuthFailure reports whether an error of the store or of one of its
	// opened keys means that the device refused the secret (a wrong or
	// locked PIN or auth value), which a retry does not cure and may make
	// worse. Nil: only errors wrapping ErrAuth do.
	AuthFailure func(error) bool
}

var (
	mu       sync.RWMutex
	backends = map[string]*Backend{}
)

// Register makes a store available under its scheme. It panics if the
// scheme is empty or already registered: registration happens in init.
func Register(b Backend) {
	mu.Lock()
	defer mu.Unlock()
	if b.Scheme == "" || b.Store == nil || (b.Development && b.Warning == "") {
		panic("keystore: Register of a backend without scheme, store, or (development only) warning")
	}
	if _, dup := backends[b.Scheme]; dup {
		panic("keystore: scheme " + b.Scheme + " registered twice")
	}
	backends[b.Scheme] = &b
}

// Backends returns the registered backends, ordered by scheme.
func Backends() []*Backend {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]*Backend, 0, len(backends))
	for _, b := range backends {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *Backend) int { return strings.Compare(a.Scheme, b.Scheme) })
	return out
}

// Lookup returns the backend of a reference's scheme. Errors wrap
// [ErrInvalidRef] (no scheme) or [ErrUnknownScheme], and list the schemes
// there are.
func Lookup(ref string) (*Backend, error) {
	scheme, _, ok := strings.Cut(ref, ":")
	if !ok || scheme == "" {
		return nil, fmt.Errorf("%w: %q has no scheme: want %s", ErrInvalidRef, keyref.Redact(ref), schemeList())
	}
	mu.RLock()
	b := backends[scheme]
	mu.RUnlock()
	if b == nil {
		return nil, fmt.Errorf("%w %q: want %s", ErrUnknownScheme, scheme, schemeList())
	}
	return b, nil
}

// For returns the store of a reference's scheme (see [Lookup]).
func For(ref string) (Store, error) {
	b, err := Lookup(ref)
	if err != nil {
		return nil, err
	}
	return b.Store, nil
}

func schemeList() string {
	var s []string
	for _, b := range Backends() {
		s = append(s, b.Scheme+": ("+b.Summary+")")
	}
	if len(s) == 0 {
		return "a registered scheme (none is: import keystore/all)"
	}
	return strings.Join(s, ", ")
}

// Hint says what to do about err: the hint of the first registered store
// that has one, or "".
func Hint(err error) string {
	if err == nil {
		return ""
	}
	for _, b := range Backends() {
		if b.Hint == nil {
			continue
		}
		if h := b.Hint(err); h != "" {
			return h
		}
	}
	switch {
	case errors.Is(err, ErrInlineSecret):
		return "name a source for the secret instead: pin-source=file:PATH or pin-source=env:NAME (auth-source= for TPM keys), or --pin-file/--pin-env"
	}
	return ""
}

// RefuseInlineSecret returns an error wrapping [ErrInlineSecret] if ref
// carries a pin-value. Every store calls it; so do callers that pass
// references on (plugins.NewClient) before they start anything.
func RefuseInlineSecret(ref string) error {
	if !strings.Contains(ref, keyref.PINValue) {
		return nil
	}
	r, err := keyref.Parse(ref)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRef, err)
	}
	if r.Has(keyref.PINValue) {
		return fmt.Errorf("%w: %s has a pin-value, which puts the PIN on command lines and in logs", ErrInlineSecret, r.String())
	}
	return nil
}

// IsAuthFailure reports whether err means that a device refused a PIN or
// auth value: it wraps [ErrAuth], or a registered store says so.
func IsAuthFailure(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrAuth) {
		return true
	}
	for _, b := range Backends() {
		if b.AuthFailure != nil && b.AuthFailure(err) {
			return true
		}
	}
	return false
}

// Check checks a reference to one key with the store of its scheme (see
// Store.Check), without touching any device.
func Check(ref string) error {
	b, err := Lookup(ref)
	if err != nil {
		return err
	}
	return b.Store.Check(ref)
}
