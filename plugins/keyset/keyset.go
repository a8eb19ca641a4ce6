// Package keyset is the Backend a twoway-hsm plugin process serves: a set
// of keys opened from references, in software (for development), on a
// PKCS#11 token or in a TPM 2.0.
//
// A reference's scheme picks the key store (package keystore, with every
// built-in store registered by keystore/all):
//
//	soft:file=/etc/twoway/dev-key.pem
//	pkcs11:token=gw;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:GW_PIN
//	tpm2:file=/etc/twoway/gw.tpm.pem?tpm=/dev/tpmrm0&auth-source=env:GW_AUTH
//
// soft: keys are development only: the private key is then in the
// plugin's memory, which is what the other two exist to avoid.
//
// References carry no secrets, since they are given on the command line.
// PINs and auth values come from a file (pin-source=file:PATH,
// auth-source=file:PATH) or from the plugin's environment
// (pin-source=env:NAME, auth-source=env:NAME); a pin-value is refused.
package keyset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	_ "github.com/twoway-hsm/twoway-hsm/keystore/all" // every key store
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Set is a plugins.Backend serving the keys it was opened with. It is safe
// for concurrent use.
type Set struct {
	plugin string
	keys   map[string]*entry
	order  []string

	closeOnce sync.Once
	closeErr  error
}

type entry struct {
	info plugins.KeyInfo
	key  keystore.Key
	x    kem.Exchanger // nil for KEMs that are not Diffie-Hellman based
}

// Option configures Open.
type Option func(*options)

type options struct {
	logger *slog.Logger
	plugin string
}

// WithLogger sets the logger the backends report events to (recoveries,
// reconnects). Nothing secret is logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithPluginName sets the plugin name Describe reports, e.g.
// "twoway-hsm v1.2.3".
func WithPluginName(name string) Option { return func(o *options) { o.plugin = name } }

// Open opens every key of refs (see the package documentation for their
// form) and returns the Set serving them, each under plugins.KeyName(ref).
// It fails, closing what it opened, if any key cannot be opened or two
// references have the same name.
func Open(ctx context.Context, refs []string, opts ...Option) (*Set, error) {
	o := options{plugin: "twoway-hsm"}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if len(refs) == 0 {
		return nil, errors.New("keyset: no keys")
	}
	s := &Set{plugin: o.plugin, keys: make(map[string]*entry)}
	for _, ref := range refs {
		name := plugins.KeyName(ref)
		if _, dup := s.keys[name]; dup {
			s.Close()
			return nil, fmt.Errorf("keyset: key %s given twice", name)
		}
		e, err := openRef(ctx, ref, &o)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("keyset: key %s: %w", name, err)
		}
		e.info.Name = name
		e.info.KEM = e.key.KEM()
		e.info.PublicKey = e.key.PublicKeyBytes()
		s.keys[name] = e
		s.order = append(s.order, name)
		o.logger.Info("key opened", "key", name, "backend", e.info.Backend, "kem", e.info.KEM.String())
	}
	return s, nil
}

// openRef opens one reference through the key store of its scheme.
func openRef(ctx context.Context, ref string, o *options) (*entry, error) {
	if err := keystore.RefuseInlineSecret(ref); err != nil {
		return nil, err
	}
	b, err := keystore.Lookup(ref)
	if err != nil {
		return nil, err
	}
	k, err := b.Store.Open(ctx, ref, &keystore.Options{Logger: o.logger})
	if err != nil {
		return nil, err
	}
	e := &entry{info: plugins.KeyInfo{Backend: b.Scheme}, key: k}
	if x, ok := k.(kem.Exchanger); ok && k.KEM().IsDH() {
		e.x = x
	}
	return e, nil
}

// Describe implements plugins.Backend.
func (s *Set) Describe(ctx context.Context) (*plugins.Description, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d := &plugins.Description{Plugin: s.plugin}
	for _, name := range s.order {
		info := s.keys[name].info
		info.PublicKey = append([]byte(nil), info.PublicKey...)
		d.Keys = append(d.Keys, info)
	}
	return d, nil
}

func (s *Set) lookup(name string) (*entry, error) {
	e, ok := s.keys[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", plugins.ErrUnknownKey, name)
	}
	return e, nil
}

// ECDH implements plugins.Backend: the backend's ECDHContext under ctx.
func (s *Set) ECDH(ctx context.Context, name string, peer []byte) ([]byte, error) {
	e, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if e.x == nil {
		return nil, fmt.Errorf("%w: key %s is a %v key, which has no Diffie-Hellman step", kem.ErrUnsupportedKEM, name, e.info.KEM)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dh, err := e.x.ECDHContext(ctx, peer)
	return dh, authError(err)
}

// authError marks the backends' authentication failures with
// plugins.ErrAuth, which crosses the plugin boundary, so that a host can
// tell them from failures that a retry may cure.
func authError(err error) error {
	if keystore.IsAuthFailure(err) {
		return fmt.Errorf("%w: %w", plugins.ErrAuth, err)
	}
	return err
}

// Decapsulate implements plugins.Backend: the key's DecapsulateContext
// under ctx.
func (s *Set) Decapsulate(ctx context.Context, name string, enc []byte) ([]byte, error) {
	e, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	ss, err := e.key.DecapsulateContext(ctx, enc)
	return ss, authError(err)
}

// Close releases every key (token sessions, TPM handles). It is
// idempotent.
func (s *Set) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for _, e := range s.keys {
			if err := e.key.Close(); err != nil {
				errs = append(errs, fmt.Errorf("keyset: close %s: %w", e.info.Name, err))
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

var _ plugins.Backend = (*Set)(nil)

// Attest implements plugins.Attester: the evidence of a key whose store
// can attest it (TPM keys, keystore.Attester); any other key gets an error
// wrapping attest.ErrNotAttestable that says why.
func (s *Set) Attest(ctx context.Context, name string, cfg twoway.KeyConfig, nonce []byte) (*attest.Evidence, error) {
	a, err := s.attester(name)
	if err != nil {
		return nil, err
	}
	ev, err := a.Attest(ctx, cfg, nonce)
	return ev, authError(err)
}

// Activate implements plugins.Attester: the key's TPM answers the
// credential-activation challenge.
func (s *Set) Activate(ctx context.Context, name string, c *attest.Challenge) (*attest.Answer, error) {
	a, err := s.attester(name)
	if err != nil {
		return nil, err
	}
	ans, err := a.Activate(ctx, c)
	return ans, authError(err)
}

func (s *Set) attester(name string) (keystore.Attester, error) {
	e, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	a, err := keystore.AttesterOf(e.key, e.info.Backend)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	return a, nil
}

var _ plugins.Attester = (*Set)(nil)
