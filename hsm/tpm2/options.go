package tpm2

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"
)

// Option configures [Open], [OpenKey] and the key operations of a [TPM].
// Options that do not apply to an operation are ignored by it.
type Option func(*config)

// Defaults.
const (
	// DefaultTimeout bounds the calls that take no context, such as
	// [Key.ECDH] (crypto/ecdh.KeyExchanger).
	DefaultTimeout = 30 * time.Second
	// DefaultIOTimeout bounds a single TPM command on a socket transport,
	// so a hung simulator cannot block the caller forever.
	DefaultIOTimeout = 60 * time.Second
	// maxAuthSize is the largest auth value for keys with a SHA-256 name
	// algorithm (the digest size).
	maxAuthSize = 32
)

type config struct {
	authSrc   func() ([]byte, error) // nil: empty auth
	ownerAuth []byte
	// srkHandle is the parent for new keys: 0 probes SRKHandle, then falls
	// back to the transient SRK; ownerHierarchy is the transient SRK.
	srkHandle   Handle
	timeout     time.Duration
	ioTimeout   time.Duration
	logger      *slog.Logger
	description string
}

func newConfig(opts []Option) *config {
	c := &config{timeout: DefaultTimeout, ioTimeout: DefaultIOTimeout}
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
// created or opened. One trailing newline ("\n" or "\r\n") is removed, so
// `echo secret > file` works.
func WithAuthFile(path string) Option {
	return func(c *config) {
		c.authSrc = func() ([]byte, error) { return readAuthFile(path) }
	}
}

// WithAuthEnv reads the key's auth value from the environment variable name
// when the key is created or opened. An unset variable is an error; an empty
// one means no auth.
func WithAuthEnv(name string) Option {
	return func(c *config) {
		c.authSrc = func() ([]byte, error) {
			v, ok := os.LookupEnv(name)
			if !ok {
				return nil, fmt.Errorf("%w: environment variable %s is not set", ErrInvalidAuth, name)
			}
			return []byte(v), nil
		}
	}
}

// WithOwnerAuth sets the owner hierarchy's auth value, needed to create the
// storage root key and to make keys persistent when the owner hierarchy has
// a password (it usually has none). It is sent as a password session.
// It applies to the connection and is taken from the first [Open] of a
// transport in the process.
func WithOwnerAuth(auth []byte) Option {
	cp := bytes.Clone(auth)
	return func(c *config) { c.ownerAuth = cp }
}

// WithSRKHandle makes new keys use the storage root key at persistent
// handle h, which must exist. By default the package uses the key at
// [SRKHandle] (0x81000001) when one is there and otherwise creates the
// standard ECC P-256 SRK in the owner hierarchy on demand. It applies to
// the connection (see [WithOwnerAuth]).
func WithSRKHandle(h Handle) Option {
	return func(c *config) { c.srkHandle = h }
}

// WithTransientSRK makes new keys use the transient ECC P-256 SRK created
// from the standard template even when a persistent SRK exists at
// [SRKHandle]. It applies to the connection (see [WithOwnerAuth]).
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

// WithIOTimeout bounds each TPM command on a socket transport (default
// [DefaultIOTimeout]). It applies to the connection (see [WithOwnerAuth]).
func WithIOTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.ioTimeout = d
		}
	}
}

// WithLogger sets a structured logger for connection events (reconnects,
// flushed stale handles). Nothing secret is logged. It applies to the
// connection (see [WithOwnerAuth]).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithDescription sets the description stored in a key file created by
// [TPM.CreateKey] or [TPM.ImportKey].
func WithDescription(s string) Option {
	return func(c *config) { c.description = s }
}

// resolveAuth fetches the auth value from its source and trims trailing
// zero bytes, as the TPM does (TPM 2.0 Part 1, 19.6.5 note 2).
func (c *config) resolveAuth() ([]byte, error) {
	if c.authSrc == nil {
		return nil, nil
	}
	a, err := c.authSrc()
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

func readAuthFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: auth file %s does not exist", ErrInvalidAuth, path)
		}
		return nil, fmt.Errorf("%w: reading auth file: %w", ErrInvalidAuth, err)
	}
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		if n > 0 && b[n-1] == '\r' {
			n--
		}
	}
	out := bytes.Clone(b[:n])
	clear(b)
	return out, nil
}
