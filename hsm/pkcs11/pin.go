package pkcs11

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
		v := os.Getenv(o.pinEnv)
		if v == "" {
			return "", true, fmt.Errorf("%w: environment variable %s is unset or empty", ErrPINSource, o.pinEnv)
		}
		return v, true, nil
	case o.pinFile != "":
		pin, err := pinFromSource(o.pinFile)
		return pin, true, err
	case u != nil && u.HasPINValue:
		if u.pinValue == "" {
			return "", true, fmt.Errorf("%w: empty pin-value in URI", ErrPINSource)
		}
		return u.pinValue, true, nil
	case u != nil && u.PINSource != "":
		pin, err := pinFromSource(u.PINSource)
		return pin, true, err
	}
	return "", false, nil
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
