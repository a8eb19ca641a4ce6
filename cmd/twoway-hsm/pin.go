package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
)

// secretFlags are the ways a command is given a PKCS#11 PIN or a TPM key's
// auth value. Secrets never come from argv unless the operator insists:
// a pin-value in a URI is refused without --insecure-pin.
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

// checkRef refuses a PKCS#11 URI with a pin-value unless --insecure-pin.
func (s *secretFlags) checkRef(ref string) error {
	if !strings.HasPrefix(ref, schemePKCS11+":") || s.insecure {
		return nil
	}
	u, err := pkcs11.ParseURI(ref)
	if err != nil {
		return err
	}
	if u.HasPINValue {
		return errPINInArgv
	}
	return nil
}

// hasURISource reports whether a reference names its own secret source
// (pin-source, pin-value, auth-source).
func hasURISource(ref string) bool {
	_, q, ok := strings.Cut(ref, "?")
	if !ok {
		return false
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return false
	}
	return vals.Has("pin-source") || vals.Has("pin-value") || vals.Has("auth-source")
}

// secret returns the secret from --pin-file or --pin-env, or, when neither
// is given and the reference names no source of its own, from a prompt on
// the terminal (ok false when there is no terminal: no secret at all).
func (s *secretFlags) secret(env *environment, ref, what string) (secret string, ok bool, err error) {
	switch {
	case s.file != "" && s.env != "":
		return "", false, errors.New("give --pin-file or --pin-env, not both")
	case s.file != "":
		b, err := os.ReadFile(s.file)
		if err != nil {
			return "", false, fmt.Errorf("--pin-file: %w", err)
		}
		// One trailing line break goes, as when hsm/pkcs11 and hsm/tpm2
		// read a pin-source or auth-source file: the references printed
		// with this file as their source then work as this command did.
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		clear(b)
		if v == "" {
			return "", false, fmt.Errorf("--pin-file %s is empty", s.file)
		}
		return v, true, nil
	case s.env != "":
		v := env.getenv(s.env)
		if v == "" {
			return "", false, fmt.Errorf("--pin-env: environment variable %s is unset or empty", s.env)
		}
		return v, true, nil
	case hasURISource(ref):
		return "", false, nil
	}
	if !stdinIsTerminal(env) {
		return "", false, nil
	}
	fmt.Fprintf(env.stderr, "%s: ", what)
	b, err := term.ReadPassword(env.stdinFd)
	fmt.Fprintln(env.stderr)
	if err != nil {
		return "", false, fmt.Errorf("reading the %s: %w", what, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	clear(b)
	return v, v != "", nil
}

// pkcs11Options returns the options that give pkcs11 the PIN.
func (s *secretFlags) pkcs11Options(env *environment, uri string) ([]pkcs11.Option, error) {
	if err := s.checkRef(uri); err != nil {
		return nil, err
	}
	pin, ok, err := s.secret(env, uri, "PIN for "+pkcs11.RedactURI(uri))
	if err != nil || !ok {
		return nil, err
	}
	return []pkcs11.Option{pkcs11.WithPIN(pin)}, nil
}

// pluginEnvName is the environment variable through which a command hands
// a secret to a plugin process it starts.
const pluginEnvName = "TWOWAY_HSM_SECRET"

// forPlugin returns the reference to give a plugin process and the
// environment entries that carry its secret: the secret never appears in
// the plugin's argv.
func (s *secretFlags) forPlugin(env *environment, ref string) (string, []string, error) {
	if err := s.checkRef(ref); err != nil {
		return "", nil, err
	}
	if (s.file != "" || s.env != "") && hasURISource(ref) {
		return "", nil, errors.New("the reference names its own pin-source or auth-source and --pin-file or --pin-env gives another; use one of them")
	}
	what, attr := "PIN for "+pkcs11.RedactURI(ref), "pin-source"
	if strings.HasPrefix(ref, schemeTPM2+":") {
		what, attr = "auth value for "+ref, "auth-source"
	}
	v, ok, err := s.secret(env, ref, what)
	if err != nil || !ok {
		return ref, nil, err
	}
	sep := "?"
	if strings.Contains(ref, "?") {
		sep = "&"
	}
	return ref + sep + attr + "=env:" + pluginEnvName, []string{pluginEnvName + "=" + v}, nil
}

// readLine reads one line from the reader, for confirmations.
func readLine(env *environment) string {
	line, _ := bufio.NewReader(env.stdin).ReadString('\n')
	return strings.TrimSpace(line)
}
