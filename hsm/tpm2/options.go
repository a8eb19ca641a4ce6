package tpm2

import (
	"bytes"
	"fmt"
	"log/slog"
	"time"

	"github.com/twoway-hsm/twoway-hsm/keystore/secret"
)

// Option configures [Open], [OpenKey] and the key operations of a [TPM].
// Options that do not apply to an operation are ignored by it.
type Option func(*config)

// Defaults.
const (
	// DefaultTimeout bounds the calls that take no context, such as
	// [Key.ECDH] (crypto/ecdh.KeyExchanger).
	DefaultTimeout = 30 * time.Second
	// ioTimeout bounds a single TPM command on a socket transport, so a
	// hung simulator cannot block the caller forever.
	ioTimeout = 60 * time.Second
	// probeTimeout bounds the first command on a new socket connection:
	// a TPM answers it in milliseconds, so silence means that something
	// else holds swtpm's only connection, or that the socket is not a
	// TPM's.
	probeTimeout = 5 * time.Second
	// maxAuthSize is the largest auth value for keys with a SHA-256 name
	// algorithm (the digest size).
	maxAuthSize = 32
)

type config struct {
	authSrc func() ([]byte, error) // nil: empty auth
	// authPrompt is asked for the auth value of a key file that records
	// one when authSrc is nil.
	authPrompt func() ([]byte, error)
	allowSign  bool
	// srkHandle is the parent for new keys: 0 probes SRKHandle, then falls
	// back to the transient SRK; ownerHierarchy is the transient SRK.
	srkHandle Handle
	timeout   time.Duration
	logger    *slog.Logger
}

func newConfig(opts []Option) *config {
	c := &config{timeout: DefaultTimeout}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// perKey clears what a connection must not keep: the options that belong
// to one key.
func (c *config) perKey() {
	c.authSrc, c.authPrompt, c.allowSign = nil, nil, false
}

// WithAuth sets the key's auth value (its password) from code. The slice is
// copied; the caller may zero its own copy afterwards, and the Option's copy
// lives as long as the Option (prefer WithAuthFile or WithAuthEnv, read when
// needed). An empty value means no auth. Auth values are never logged or
// included in errors.
func WithAuth(auth []byte) Option {
	cp := bytes.Clone(auth)
	return func(c *config) {
		c.authSrc = func() ([]byte, error) { return bytes.Clone(cp), nil }
	}
}

// WithAuthFile reads the key's auth value from a file when the key is
// created or opened, with package keystore/secret: at most 4 KiB, one
// trailing newline ("\n" or "\r\n") removed, so `echo secret > file`
// works; an empty file is an error.
func WithAuthFile(path string) Option {
	return withAuthSource(secret.Source{Kind: secret.File, Path: path})
}

// WithAuthEnv reads the key's auth value from the environment variable name
// when the key is created or opened. An unset or empty variable is an
// error.
func WithAuthEnv(name string) Option {
	return withAuthSource(secret.Source{Kind: secret.Env, Name: name})
}

func withAuthSource(src secret.Source) Option {
	return func(c *config) {
		c.authSrc = func() ([]byte, error) {
			b, err := src.Read()
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidAuth, err)
			}
			return b, nil
		}
	}
}

// WithAuthPrompt gives the auth value of last resort: f is called, once
// per key, only when a key file records that its key has an auth value
// and no other source (WithAuth, WithAuthFile, WithAuthEnv, a reference's
// auth-source) gives one. CreateKey, ImportKey and OpenHandle ignore it:
// a persistent handle does not say whether its key has an auth value.
// The bytes f returns are the key's, zeroed when the key is closed.
func WithAuthPrompt(f func() ([]byte, error)) Option {
	return func(c *config) { c.authPrompt = f }
}

// WithAllowSign accepts a decryption key that can also sign (the sign
// attribute set), as tpm2-openssl and tpm2_create make EC keys by default.
// Without it such keys are refused with [ErrUnsupportedKey]: a key used
// for key agreement should not make signatures too (see the package
// documentation). The reference attribute allow-sign=true sets it.
func WithAllowSign() Option {
	return func(c *config) { c.allowSign = true }
}

// WithTransientSRK makes new keys use the transient ECC P-256 SRK created
// from the standard template even when a persistent SRK exists at
// [SRKHandle]. It applies to the connection and is taken from the first
// [Open] of a transport in the process.
func WithTransientSRK() Option {
	return func(c *config) { c.srkHandle = ownerHierarchy }
}

// WithTimeout sets the bound for calls that take no context, such as
// [Key.ECDH]. The default is [DefaultTimeout].
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithLogger sets a structured logger for connection events (reconnects,
// flushed stale handles). Nothing secret is logged. It applies to the
// connection (see [WithTransientSRK]).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// resolveAuth fetches the auth value from its source and trims trailing
// zero bytes, as the TPM does (TPM 2.0 Part 1, 19.6.5 note 2). With
// needed set (a key file that records an auth value) and no source, it
// asks the prompt (WithAuthPrompt), if there is one.
func (c *config) resolveAuth(needed bool) ([]byte, error) {
	src := c.authSrc
	if src == nil && needed {
		src = c.authPrompt
	}
	if src == nil {
		return nil, nil
	}
	a, err := src()
	if err != nil {
		return nil, err
	}
	for len(a) > 0 && a[len(a)-1] == 0 {
		a = a[:len(a)-1]
	}
	if len(a) > maxAuthSize {
		clear(a)
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidAuth, maxAuthSize)
	}
	if len(a) == 0 {
		return nil, nil
	}
	return a, nil
}
