package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
)

// The command-line framework every command but plugin shares (plugin's
// stdout belongs to the plugin protocol): the command table's types,
// flags that may come anywhere, and one convention for failures.
//
// A failure is reported as its cause on one line ("twoway-hsm keys show:
// ..."), then either "see 'twoway-hsm keys show -h'" (a usage error, exit
// status 2) or a "hint:" line when the cause is a known one (exit status
// 1). With --json the failure is also one JSON object on stdout, with the
// fields error and hint, so that a script reading stdout always gets a
// document.

// Exit statuses.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the command failed
	exitUsage   = 2 // the command line is wrong
)

// command is one entry of a command table: run gets the arguments after
// the command's name and returns the exit status.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *environment, args []string) int
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// isUsage reports whether err is a mistake on the command line: a usage
// error, or a key reference that is malformed or names no known scheme.
func isUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u) || errors.Is(err, keystore.ErrInvalidRef) || errors.Is(err, keystore.ErrUnknownScheme) ||
		errors.Is(err, keyref.ErrInvalid)
}

// safeRef returns a reference fit for messages: without any pin-value.
func safeRef(ref string) string { return keyref.Redact(ref) }

// runSubcommand runs the subcommand of group that args[0] names.
func runSubcommand(ctx context.Context, env *environment, group, usage string, subs []command, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(env.stderr, "twoway-hsm %s: missing subcommand\nsee 'twoway-hsm %s -h'\n", group, group)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(env.stdout, usage)
		return exitOK
	}
	i := slices.IndexFunc(subs, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		var names []string
		for _, c := range subs {
			names = append(names, c.name)
		}
		fmt.Fprintf(env.stderr, "twoway-hsm %s: unknown subcommand %q (want %s)\nsee 'twoway-hsm %s -h'\n", group, args[0], strings.Join(names, ", "), group)
		return exitUsage
	}
	return subs[i].run(ctx, env, args[1:])
}

// cmdline is one command's flags, parsing and failure reporting.
type cmdline struct {
	name  string // "keys create"
	usage string // the text before the flag list
	env   *environment
	fs    *flag.FlagSet
	json  bool
	// jsonAsked is set when --json is on the command line, so that a
	// failure while parsing the flags is JSON too.
	jsonAsked bool
}

func newCmdline(env *environment, name, usage string) *cmdline {
	c := &cmdline{name: name, usage: usage, env: env}
	c.fs = flag.NewFlagSet(name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard) // parse reports errors itself, in one line
	c.fs.Usage = func() {}
	return c
}

// addJSON registers --json.
func (c *cmdline) addJSON() {
	c.fs.BoolVar(&c.json, "json", false, "print the result as one JSON document (failures too)")
}

// stringList collects a repeated flag. Values are checked after parsing,
// so that the flag package never echoes one (a reference may hold a
// pin-value) in an error.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// printUsage writes the usage text and the flags.
func (c *cmdline) printUsage(w io.Writer) {
	fmt.Fprint(w, c.usage)
	has := false
	c.fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		c.fs.SetOutput(w)
		c.fs.PrintDefaults()
		c.fs.SetOutput(io.Discard)
	}
}

// parse parses flags that may come before, between or after the
// positional arguments ("keys create REF --kem p256"); "--" ends the
// flags. It returns the positional arguments, or an exit status when the
// command should stop (after -h: 0; after a bad flag: 2).
func (c *cmdline) parse(args []string) ([]string, int, bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" || a == "-json" || a == "--json=true" || a == "-json=true" {
			c.jsonAsked = true
		}
	}
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printUsage(c.env.stdout)
				return nil, exitOK, false
			}
			// The flag package's messages quote the flag, never a value
			// of a stringList (checked later), but may quote a bad value
			// of another flag: none of those is secret.
			return nil, c.fail(usagef("%v", err)), false
		}
		rest := c.fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), 0, true
		}
		if len(rest) == 0 {
			return pos, 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// oneRef parses the arguments of a command that takes exactly one REF and
// returns it with its backend.
func (c *cmdline) oneRef(args []string) (string, *keystore.Backend, int, bool) {
	pos, code, ok := c.parse(args)
	if !ok {
		return "", nil, code, false
	}
	switch {
	case len(pos) == 0:
		return "", nil, c.fail(usagef("missing key reference (REF)")), false
	case len(pos) > 1:
		return "", nil, c.fail(usagef("unexpected argument %q after the reference", safeRef(pos[1]))), false
	case pos[0] == "":
		return "", nil, c.fail(usagef("empty key reference")), false
	}
	b, err := keystore.Lookup(pos[0])
	if err != nil {
		return "", nil, c.fail(err), false
	}
	return pos[0], b, 0, true
}

// failureJSON is a failure as --json prints it.
type failureJSON struct {
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
	// Usage is true for a mistake on the command line (exit status 2).
	Usage bool `json:"usage,omitempty"`
}

// fail reports err and returns the exit status: 2 for a usage error, 1
// otherwise.
func (c *cmdline) fail(err error) int {
	msg := oneLine(err.Error())
	fmt.Fprintf(c.env.stderr, "twoway-hsm %s: %s\n", c.name, msg)
	usage := isUsage(err)
	h := ""
	if usage {
		fmt.Fprintf(c.env.stderr, "see 'twoway-hsm %s -h'\n", c.name)
	} else if h = hint(err); h != "" {
		fmt.Fprintf(c.env.stderr, "hint: %s\n", h)
	}
	if c.json || c.jsonAsked {
		writeJSON(c.env.stdout, failureJSON{Error: msg, Hint: h, Usage: usage})
	}
	if usage {
		return exitUsage
	}
	return exitFailure
}

// oneLine joins the lines of a message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// output writes v as JSON with --json, or with text otherwise.
func (c *cmdline) output(v any, text func(w io.Writer)) int {
	if c.json {
		if err := writeJSON(c.env.stdout, v); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	text(c.env.stdout)
	return exitOK
}

// warnDevelopment prints the development-only warning of a backend whose
// keys are not in hardware.
func (c *cmdline) warnDevelopment(b *keystore.Backend) {
	if b.Development {
		fmt.Fprintln(c.env.stderr, "warning: "+b.Warning)
	}
}

// hint says what to do about an error: the key store's hint, or the
// CLI's own.
func hint(err error) string {
	var he *hintedError
	if errors.As(err, &he) {
		return he.hint
	}
	if h := keystore.Hint(err); h != "" {
		return h
	}
	if h := tlsHint(err); h != "" {
		return h
	}
	switch {
	case errors.Is(err, keystore.ErrKEMRequired):
		return "a raw private key file does not say its KEM: add --kem (e.g. --kem x25519)"
	case errors.Is(err, keystore.ErrMaterial):
		return "keys import reads a PKCS#8, SEC 1 or HPKE PRIVATE KEY PEM file, or a raw private key with --kem"
	case errors.Is(err, keystore.ErrSecretRequired):
		return "give the PIN or auth value with --pin-file FILE or --pin-env NAME, or name its source in the reference (pin-source=file:PATH or env:NAME; auth-source= for TPM keys)"
	}
	return ""
}

// hintedError is an error with the hint that says what to do about it.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintedError{err: err, hint: hint} }

// tlsHint says what to do about a TLS failure.
func tlsHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown), errors.As(err, &verify):
		return "the server's certificate is not trusted here: give its CA with --ca-cert FILE"
	}
	// The TLS alerts the server sends (crypto/tls does not export their
	// type for TCP connections).
	msg := err.Error()
	for _, a := range []string{"remote error: tls: certificate required", "remote error: tls: bad certificate", "remote error: tls: unknown certificate authority"} {
		if strings.Contains(msg, a) {
			return "the server requires a client certificate that it trusts (mutual TLS): give --client-cert FILE and --client-key FILE"
		}
	}
	return ""
}

// readFileBounded reads at most max bytes of the file at path ("-":
// env's stdin, when env is not nil); a longer file is an error that says it is not what: a
// certificate bundle, evidence, a key configuration.
func readFileBounded(env *environment, path string, max int, what string) ([]byte, error) {
	var r io.Reader
	if path == "-" && env != nil {
		r = env.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s is longer than %d bytes: not %s", path, max, what)
	}
	return b, nil
}
