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
	// callers warn whenever one is used.
	Development bool
	// SecretAttr is the query attribute that names the key's secret
	// source ("pin-source", "auth-source"), or "" if its keys have none.
	SecretAttr string
	// Store is the store.
	Store Store
	// Hint says what to do about an error of this store, or "".
	Hint func(error) string
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
	if b.Scheme == "" || b.Store == nil {
		panic("keystore: Register of a backend without scheme or store")
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
