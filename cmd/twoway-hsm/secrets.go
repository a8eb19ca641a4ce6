package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"strings"

	"golang.org/x/term"

	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
	"github.com/twoway-hsm/twoway-hsm/keystore/secret"
)

// secretFlags are the ways a command is given a PKCS#11 PIN or a TPM key's
// auth value. The CLI never reads a secret file or variable itself: it
// names the source in the reference (pin-source=, auth-source=), and the
// key store reads it, as a plugin would. A secret on the command line (a
// pin-value) is refused unless the operator insists with --insecure-pin;
// then it stays in this process, and reaches a plugin only through the
// plugin's environment.
type secretFlags struct {
	file     string
	env      string
	insecure bool
}

func (s *secretFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.file, "pin-file", "", "read the PKCS#11 PIN (or TPM key auth value) from this file (one trailing line break is ignored)")
	fs.StringVar(&s.env, "pin-env", "", "read the PKCS#11 PIN (or TPM key auth value) from this environment variable")
	fs.BoolVar(&s.insecure, "insecure-pin", false, "accept a pin-value in a PKCS#11 URI (it is visible in the process list and shell history)")
}

// errPINInArgv is returned for a pin-value without --insecure-pin.
var errPINInArgv = errors.New("a pin-value in the URI puts the PIN on the command line, where other users and the shell history see it; use --pin-file, --pin-env or pin-source=file:PATH in the URI, or add --insecure-pin")

// secretCmd is a cmdline with the PIN and auth value flags.
type secretCmd struct {
	*cmdline
	secrets secretFlags
}

func newSecretCmd(env *environment, name, usage string) *secretCmd {
	c := &secretCmd{cmdline: newCmdline(env, name, usage)}
	c.secrets.register(c.fs)
	return c
}

// resolved is a reference ready for a key store: the secret source of the
// flags is in it, and a secret from --insecure-pin or a prompt is in
// inline.
type resolved struct {
	ref     string
	backend *keystore.Backend
	// inline is the pin-value taken out of the reference (with
	// --insecure-pin); nil otherwise.
	inline []byte
	// hasSource says whether ref names its secret's source.
	hasSource bool
}

// wipe zeroes the inline secret.
func (r *resolved) wipe() { clear(r.inline) }

// resolve checks the reference and puts the secret source of --pin-file
// or --pin-env into it (as pin-source= or auth-source=, whichever the
// backend takes). A pin-value is taken out (with --insecure-pin) or
// refused. Errors are usage errors.
func (c *secretCmd) resolve(ref string, b *keystore.Backend) (*resolved, error) {
	s := &c.secrets
	if s.file != "" && s.env != "" {
		return nil, usagef("give --pin-file or --pin-env, not both")
	}
	r := &resolved{ref: ref, backend: b}
	clean, inline, err := keyref.TakePINValue(ref)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if inline != nil {
		if !s.insecure {
			clear(inline)
			return nil, usagef("%v", errPINInArgv)
		}
		if len(inline) == 0 {
			return nil, usagef("the pin-value in the URI is empty")
		}
		r.ref, r.inline = clean, inline
	}
	if b.SecretAttr == "" {
		if s.file != "" || s.env != "" {
			return nil, usagef("--pin-file and --pin-env do not apply to a %s: key, which has no PIN or auth value", b.Scheme)
		}
		return r, nil
	}
	parsed, err := keyref.Parse(r.ref)
	if err != nil {
		r.wipe()
		return nil, usagef("%v", err)
	}
	r.hasSource = parsed.Has(b.SecretAttr) || r.inline != nil
	if s.file == "" && s.env == "" {
		return r, nil
	}
	if r.hasSource {
		r.wipe()
		return nil, usagef("the reference names its own secret (%s= or pin-value) and --pin-file or --pin-env gives another; use one of them", b.SecretAttr)
	}
	src := "env:" + s.env
	if s.file != "" {
		if src, err = secret.Canonical("file:" + s.file); err != nil {
			return nil, usagef("--pin-file: %v", err)
		}
	} else if _, err := secret.Parse(src); err != nil || strings.ContainsAny(s.env, " ") {
		return nil, usagef("--pin-env %q: want the name of an environment variable", s.env)
	}
	parsed.SetQuery(b.SecretAttr, src)
	r.ref, r.hasSource = parsed.String(), true
	return r, nil
}

// options returns the key store options for a command run in this
// process: the inline secret, or else a prompt on the terminal when the
// reference names no source (a store asks only when it needs a secret).
func (c *secretCmd) options(r *resolved) *keystore.Options {
	o := &keystore.Options{}
	switch {
	case r.inline != nil:
		o.Secret = func(string) ([]byte, error) { return append([]byte(nil), r.inline...), nil }
	case !r.hasSource && r.backend.SecretAttr != "" && stdinIsTerminal(c.env):
		o.Secret = func(what string) ([]byte, error) { return c.prompt(what) }
	}
	return o
}

// prompt reads a secret from the terminal without echo.
func (c *secretCmd) prompt(what string) ([]byte, error) {
	fmt.Fprintf(c.env.stderr, "%s: ", what)
	b, err := term.ReadPassword(c.env.stdinFd)
	fmt.Fprintln(c.env.stderr)
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("reading the %s: %w", what, err)
	}
	n := len(b)
	for n > 0 && (b[n-1] == '\r' || b[n-1] == '\n') {
		n--
	}
	if n == 0 {
		clear(b)
		return nil, fmt.Errorf("%w: nothing was typed for the %s", keystore.ErrSecretRequired, what)
	}
	return b[:n], nil
}

// pluginSecretEnv is the environment variable through which a command
// hands a secret it holds (from --insecure-pin or a prompt) to a plugin
// process it starts.
const pluginSecretEnv = "TWOWAY_HSM_SECRET"

// forPlugin returns the reference to give a plugin process and the
// environment entries that carry a secret this process holds: the
// secret never appears in the plugin's argv or in a log. Secrets named
// by a source (a file, a variable) stay there for the plugin to read.
func (c *secretCmd) forPlugin(r *resolved) (string, []string, error) {
	var v []byte
	switch {
	case r.inline != nil:
		v = r.inline
	case !r.hasSource && r.backend.SecretRequired && stdinIsTerminal(c.env):
		var err error
		if v, err = c.prompt("PIN for " + safeRef(r.ref)); err != nil {
			return "", nil, err
		}
		defer clear(v)
	default:
		return r.ref, nil, nil
	}
	parsed, err := keyref.Parse(r.ref)
	if err != nil {
		return "", nil, usagef("%v", err)
	}
	parsed.SetQuery(r.backend.SecretAttr, "env:"+pluginSecretEnv)
	return parsed.String(), []string{pluginSecretEnv + "=" + string(v)}, nil
}

// readLine reads one line from the reader, for confirmations.
func readLine(env *environment) string {
	line, _ := bufio.NewReader(env.stdin).ReadString('\n')
	return strings.TrimSpace(line)
}
