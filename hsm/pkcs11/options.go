package pkcs11

import (
	"log/slog"
	"time"
)

// Default values of the options.
const (
	// DefaultPoolSize is the number of sessions a Token keeps when
	// WithPoolSize is not given (before clamping to the token's limit).
	DefaultPoolSize = 4
	// DefaultMaxRetries is how many times an operation is retried after
	// recovering the module, the sessions, the login or a key handle, or
	// after a transient failure.
	DefaultMaxRetries = 3
	// DefaultTimeout is the timeout of the context [Key.ECDH] uses, since it
	// takes none.
	DefaultTimeout = 30 * time.Second
)

// Option configures [OpenToken] and [OpenKey].
type Option func(*options)

type options struct {
	modulePath string
	pin        *string
	pinEnv     string
	pinFile    string
	pinFunc    func(TokenInfo) ([]byte, error)
	poolSize   int
	strict     bool
	maxRetries int
	timeout    time.Duration
	logger     *slog.Logger
	abandon    bool
}

func buildOptions(opts []Option) options {
	o := options{poolSize: DefaultPoolSize, maxRetries: DefaultMaxRetries, timeout: DefaultTimeout}
	for _, f := range opts {
		f(&o)
	}
	if o.poolSize < 1 {
		o.poolSize = 1
	}
	if o.maxRetries < 0 {
		o.maxRetries = 0
	}
	if o.timeout <= 0 {
		o.timeout = DefaultTimeout
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// WithModulePath sets the PKCS#11 module to load, overriding the URI's
// module-path. Without either, p11-kit's proxy module is used when it is
// installed (see [DefaultModulePath]); there is no other default.
func WithModulePath(path string) Option { return func(o *options) { o.modulePath = path } }

// WithPIN gives the user PIN in code. It takes precedence over every other
// PIN source. The PIN is kept in memory for logging in again after a
// recovery and is never printed.
func WithPIN(pin string) Option { return func(o *options) { o.pin = &pin } }

// WithPINEnv reads the user PIN from the named environment variable, which
// must be set and non-empty. It takes precedence over WithPINFile and the
// URI.
func WithPINEnv(name string) Option { return func(o *options) { o.pinEnv = name } }

// WithPINFile reads the user PIN as a URI's pin-source would (package
// keystore/secret): from a file (a path or a file: URI; at most 4 KiB, one
// trailing line break dropped), or env:NAME. It takes precedence over the
// URI's pin-value and pin-source.
func WithPINFile(path string) Option { return func(o *options) { o.pinFile = path } }

// WithPINFunc supplies the user PIN when no other source gives one
// (WithPIN, WithPINEnv, WithPINFile, the URI's pin-value or pin-source):
// a prompt, say. It is called at most once per OpenToken or OpenKey, and
// only after the token was found and turned out to require a login
// without a protected authentication path, so that nobody is asked for
// the PIN of a token that is not there. The returned bytes are cleared
// after use; an error is returned wrapped with [ErrPINSource].
func WithPINFunc(f func(TokenInfo) ([]byte, error)) Option {
	return func(o *options) { o.pinFunc = f }
}

// WithPoolSize sets how many sessions the Token opens at most, hence how
// many operations run on the token at once. It is clamped to the token's
// MaxRwSessionCount when the token reports a finite one. Values below 1 mean
// 1.
func WithPoolSize(n int) Option { return func(o *options) { o.poolSize = n } }

// WithStrict refuses keys that could leave the token: CKA_EXTRACTABLE=true
// or CKA_SENSITIVE=false ([ErrKeyExtractable]).
func WithStrict(strict bool) Option { return func(o *options) { o.strict = strict } }

// WithMaxRetries bounds how many times an operation is retried after a
// recoverable failure (session closed, login lost, token removed, module
// finalised, stale object handle, CKR_GENERAL_ERROR or CKR_FUNCTION_FAILED).
func WithMaxRetries(n int) Option { return func(o *options) { o.maxRetries = n } }

// WithTimeout sets the timeout of the context [Key.ECDH] runs each exchange
// under, since it takes none.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithAbandonOnCancel makes [Key.ECDHContext] (and so [Key.ECDH]) return as
// soon as its context ends even while a call is stuck inside the module, by
// running each exchange on a goroutine of its own. Use it with network HSMs
// whose calls can hang; it costs a goroutine hand-off per exchange (about
// 20% of a SoftHSM P-256 exchange on a loaded 2-core machine). By default
// the context bounds only the wait for a session and the retries.
func WithAbandonOnCancel(abandon bool) Option { return func(o *options) { o.abandon = abandon } }

// WithLogger sets a structured logger for recoveries and other events worth
// an operator's attention. Records never contain a PIN, key material or a
// shared secret. The default discards everything.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }
