package plugins

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
)

// Defaults of Config.
const (
	// DefaultStartTimeout bounds one plugin start: the process, the
	// handshake and the first Describe.
	DefaultStartTimeout = 30 * time.Second
	// DefaultCallTimeout bounds the calls that take no context, such as
	// Key.ECDH (crypto/ecdh.KeyExchanger).
	DefaultCallTimeout = 10 * time.Second
	// DefaultMinBackoff is the wait before the second attempt to start a
	// plugin after a failed start; each further failure doubles it.
	DefaultMinBackoff = 50 * time.Millisecond
	// DefaultMaxBackoff caps the wait between attempts to start a plugin.
	DefaultMaxBackoff = 5 * time.Second
	// MaxProcesses caps Config.Processes.
	MaxProcesses = 64
)

// Config says which plugin to run and how. Only Path and Keys (or Args)
// are required.
type Config struct {
	// Path is the plugin binary, usually the twoway-hsm command.
	Path string
	// Keys are the references of the keys the plugin is to serve (see
	// package plugins/keyset). They are command-line arguments, visible
	// to every user in ps: they must not contain secrets. A reference with
	// a pin-value is refused before anything starts (the error wraps
	// keystore.ErrInlineSecret and does not repeat the PIN); name a
	// source instead (pin-source=env:NAME with the PIN in Env, or
	// pin-source=file:PATH). With Args empty, the plugin runs as
	// `Path plugin --key K1 --key K2 ...`.
	Keys []string
	// Args, if set, replaces the arguments derived from Keys. An argument
	// that holds a pin-value is refused as in Keys.
	Args []string
	// Env is the plugin's entire environment: nothing of the host's
	// environment is passed on. PINs and auth values that references name
	// with pin-source=env:NAME or auth-source=env:NAME go here, as does
	// SOFTHSM2_CONF for SoftHSM. go-plugin adds its own variables.
	Env []string
	// Checksum, if set, is the SHA-256 of the plugin binary, from a
	// trusted source: before each start the binary is opened, hashed with
	// a fresh hash, and the very file that was hashed is executed (through
	// its descriptor), so swapping the file afterwards has no effect. A
	// mismatch refuses to start the plugin ([ErrChecksum]).
	Checksum []byte
	// Processes is the number of plugin processes to run (default 1, at
	// most MaxProcesses). Calls go to the least busy one. Use 2 or more
	// with backends that serialise work inside a process, such as SoftHSM.
	Processes int
	// Logger receives the client's records and the plugins' (forwarded
	// from their stderr). The plugins log at debug level when Logger is
	// enabled for it, and at info level otherwise. Nil discards.
	Logger *slog.Logger
	// StartTimeout bounds one start (default DefaultStartTimeout).
	StartTimeout time.Duration
	// CallTimeout bounds calls that take no context (default
	// DefaultCallTimeout).
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed starts
	// (defaults DefaultMinBackoff and DefaultMaxBackoff). A plugin that
	// crashes after running normally is restarted at once.
	MinBackoff, MaxBackoff time.Duration
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Path == "" {
		return cfg, fmt.Errorf("plugins: Config.Path is empty")
	}
	// Refused before anything starts: go-plugin logs the whole command
	// line ("starting plugin", at debug level), and ps shows it to all.
	for i, k := range cfg.Keys {
		if err := keystore.RefuseInlineSecret(k); err != nil {
			return cfg, fmt.Errorf("plugins: Config.Keys[%d]: %w", i, err)
		}
	}
	for i, a := range cfg.Args {
		if err := refuseInlineSecretArg(a); err != nil {
			return cfg, fmt.Errorf("plugins: Config.Args[%d]: %w", i, err)
		}
	}
	if len(cfg.Args) == 0 {
		if len(cfg.Keys) == 0 {
			return cfg, fmt.Errorf("plugins: Config names no keys")
		}
		cfg.Args = []string{"plugin"}
		for _, k := range cfg.Keys {
			cfg.Args = append(cfg.Args, "--key", k)
		}
	}
	if cfg.Checksum != nil && len(cfg.Checksum) != sha256.Size {
		return cfg, fmt.Errorf("plugins: Config.Checksum has %d bytes; a SHA-256 has %d", len(cfg.Checksum), sha256.Size)
	}
	if cfg.Processes <= 0 {
		cfg.Processes = 1
	}
	if cfg.Processes > MaxProcesses {
		return cfg, fmt.Errorf("plugins: Config.Processes is %d, more than %d", cfg.Processes, MaxProcesses)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	// The caller may reuse its slices; Keys is not used past this point.
	cfg.Args = slices.Clone(cfg.Args)
	cfg.Env = slices.Clone(cfg.Env)
	cfg.Checksum = slices.Clone(cfg.Checksum)
	return cfg, nil
}

// refuseInlineSecretArg refuses a command-line argument that holds a
// pin-value: a reference with one, or anything else that does not parse
// as a reference and has "pin-value=" in it (such as --key=REF). The error
// does not repeat the argument's secret.
func refuseInlineSecretArg(arg string) error {
	err := keystore.RefuseInlineSecret(arg)
	if err == nil || errors.Is(err, keystore.ErrInlineSecret) {
		return err
	}
	if strings.Contains(arg, keyref.PINValue+"=") {
		return fmt.Errorf("%w: the argument has a pin-value, which puts the PIN on command lines and in logs", keystore.ErrInlineSecret)
	}
	return nil
}

// FileChecksum returns the SHA-256 of a file, such as a plugin binary, for
// Config.Checksum. The checksum should come from a trusted source (a
// release manifest, a configuration management system), not be computed
// from the installed binary at run time.
func FileChecksum(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plugins: checksum: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("plugins: checksum %s: %w", path, err)
	}
	return h.Sum(nil), nil
}
