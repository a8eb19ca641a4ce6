package pkcs11

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"strings"
)

// resolvePIN picks the user PIN: WithPIN, then WithPINEnv, then
// WithPINFile, then the URI's pin-value, then its pin-source. ok is false
// when no source was given at all.
func resolvePIN(o *options, u *URI) (pin string, ok bool, err error) {
	switch {
	case o.pin != nil:
		if *o.pin == "" {
			return "", true, fmt.Errorf("%w: empty PIN given in code", ErrPINSource)
		}
		return *o.pin, true, nil
	case o.pinEnv != "":
		pin, err := pinFromEnv(o.pinEnv)
		return pin, true, err
	case o.pinFile != "":
		pin, err := pinFromSource(o.pinFile)
		return pin, true, err
	case u.HasPINValue:
		if u.pinValue == "" {
			return "", true, fmt.Errorf("%w: empty pin-value in URI", ErrPINSource)
		}
		return u.pinValue, true, nil
	case u.PINSource != "":
		pin, err := pinFromSource(u.PINSource)
		return pin, true, err
	}
	return "", false, nil
}

// pinFromSource reads a PIN from a pin-source: env:NAME, a "file:" URI or a
// plain path. One trailing line break is removed from a file. A source that
// cannot be read or that is empty is an error wrapping [ErrPINSource], never
// an empty PIN; the error names the file, never its content.
func pinFromSource(src string) (string, error) {
	if name, ok := strings.CutPrefix(src, "env:"); ok {
		if name == "" {
			return "", fmt.Errorf("%w: pin-source env: names no variable", ErrPINSource)
		}
		return pinFromEnv(name)
	}
	path := src
	if strings.HasPrefix(src, "file:") {
		pu, err := url.Parse(src)
		if err != nil {
			return "", fmt.Errorf("%w: pin-source is not a valid file: URI", ErrPINSource)
		}
		path = pu.Path
		if path == "" {
			path = pu.Opaque // file:relative/path
		}
		if pu.Host != "" && pu.Host != "localhost" {
			return "", fmt.Errorf("%w: pin-source names a remote host %q", ErrPINSource, pu.Host)
		}
	} else if i := strings.Index(src, ":"); i > 0 && !strings.ContainsAny(src[:i], `/\`) && len(src[:i]) > 1 {
		return "", fmt.Errorf("%w: pin-source scheme %q not supported (use file:PATH, a path, or env:NAME)", ErrPINSource, src[:i])
	}
	if path == "" {
		return "", fmt.Errorf("%w: empty pin-source", ErrPINSource)
	}
	b, err := readFileLimited(path, 4096)
	if err != nil {
		return "", fmt.Errorf("%w: read pin-source %s: %v", ErrPINSource, path, unwrapPathErr(err))
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	clear(b)
	if pin == "" {
		return "", fmt.Errorf("%w: pin-source %s is empty", ErrPINSource, path)
	}
	return pin, nil
}

// pinFromEnv reads a PIN from an environment variable ([WithPINEnv] or a
// pin-source env:NAME), which must be set and not empty.
func pinFromEnv(name string) (string, error) {
	v := os.Getenv(name)
	if v == "" {
		return "", fmt.Errorf("%w: environment variable %s is unset or empty", ErrPINSource, name)
	}
	return v, nil
}

// readFileLimited reads at most limit bytes of a regular file or a named
// pipe.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, errors.New("is a directory")
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, fmt.Errorf("longer than %d bytes", limit)
	}
	return b, nil
}

// unwrapPathErr drops the path from an *fs.PathError (the caller names it).
func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
