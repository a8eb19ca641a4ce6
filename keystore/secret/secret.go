// Package secret reads PINs and TPM auth values from the sources that key
// references name (pin-source= for PKCS#11, auth-source= for TPM keys):
//
//	file:/etc/twoway/gw.pin   a file (also file:///etc/..., or a bare path)
//	env:GW_PIN                an environment variable
//
// It is the one reader behind every scheme and the CLI's --pin-file and
// --pin-env: a file is read up to [MaxLen] bytes with one trailing line
// break removed; an empty or unreadable source is an error wrapping
// [ErrSource], never an empty secret; a source with any other scheme
// (http:, a typo) is refused. Errors name the source, never its content.
package secret

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// MaxLen bounds a secret read from a file.
const MaxLen = 4096

// ErrSource is wrapped by every error of this package.
var ErrSource = errors.New("secret source")

// Kind says where a source's secret is.
type Kind int

// The kinds of source.
const (
	File Kind = iota + 1
	Env
)

// Source is a parsed secret source.
type Source struct {
	Kind Kind
	// Path is the file (Kind File), Name the variable (Kind Env).
	Path string
	Name string
}

// Parse parses a source: "env:NAME", "file:PATH" (a file URL: file:/abs,
// file:///abs, file:rel) or a bare path. Any other scheme is an error.
func Parse(src string) (Source, error) {
	if src == "" {
		return Source{}, fmt.Errorf("%w: empty", ErrSource)
	}
	if name, ok := strings.CutPrefix(src, "env:"); ok {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return Source{}, fmt.Errorf("%w: env: names no variable (want env:NAME)", ErrSource)
		}
		return Source{Kind: Env, Name: name}, nil
	}
	if strings.HasPrefix(src, "file:") {
		u, err := url.Parse(src)
		if err != nil {
			return Source{}, fmt.Errorf("%w: %q is not a valid file: URL", ErrSource, src)
		}
		if u.Host != "" && u.Host != "localhost" {
			return Source{}, fmt.Errorf("%w: %q names a remote host", ErrSource, src)
		}
		p := u.Path
		if p == "" {
			p = u.Opaque
		}
		if p == "" {
			return Source{}, fmt.Errorf("%w: file: names no file", ErrSource)
		}
		return Source{Kind: File, Path: p}, nil
	}
	if i := strings.IndexByte(src, ':'); i > 0 && !strings.ContainsAny(src[:i], `/\.`) {
		return Source{}, fmt.Errorf("%w: scheme %q is not supported (want file:PATH or env:NAME)", ErrSource, src[:i])
	}
	return Source{Kind: File, Path: src}, nil
}

// String formats the source canonically: "file:PATH" or "env:NAME". In
// PATH, '%', '?', '#' and bytes that are not printable ASCII are
// percent-encoded, as a file: URL needs, so that Parse reads the same
// file back.
func (s Source) String() string {
	if s.Kind == Env {
		return "env:" + s.Name
	}
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	b.WriteString("file:")
	if strings.HasPrefix(s.Path, "//") {
		// file://X would name a host: an empty authority keeps the
		// path's own leading slashes.
		b.WriteString("//")
	}
	for i := 0; i < len(s.Path); i++ {
		c := s.Path[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#' {
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Abs returns the source with a relative file path made absolute, so that
// a reference carrying it works from any working directory.
func (s Source) Abs() Source {
	if s.Kind == File && !filepath.IsAbs(s.Path) {
		if p, err := filepath.Abs(s.Path); err == nil {
			s.Path = p
		}
	}
	return s
}

// Canonical parses src and returns its canonical, absolute form
// ("file:/abs/path" or "env:NAME").
func Canonical(src string) (string, error) {
	s, err := Parse(src)
	if err != nil {
		return "", err
	}
	return s.Abs().String(), nil
}

// Read reads the secret a source names (see [Parse]). The caller should
// clear the returned bytes when done.
func Read(src string) ([]byte, error) {
	s, err := Parse(src)
	if err != nil {
		return nil, err
	}
	return s.Read()
}

// Read reads the secret.
func (s Source) Read() ([]byte, error) {
	switch s.Kind {
	case Env:
		return ReadEnv(s.Name)
	case File:
		return ReadFile(s.Path)
	}
	return nil, fmt.Errorf("%w: no source", ErrSource)
}

// ReadEnv returns the value of an environment variable, which must be set
// and not empty.
func ReadEnv(name string) ([]byte, error) {
	v := os.Getenv(name)
	if v == "" {
		return nil, fmt.Errorf("%w: environment variable %s is unset or empty", ErrSource, name)
	}
	return []byte(v), nil
}

// ReadFile reads a secret from a regular file or a named pipe: at most
// MaxLen bytes, one trailing "\n" or "\r\n" removed; an empty secret is
// an error.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrSource, path, pathErr(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrSource, path, pathErr(err))
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory", ErrSource, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxLen+1))
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("%w: read %s: %v", ErrSource, path, pathErr(err))
	}
	if len(b) > MaxLen {
		clear(b)
		return nil, fmt.Errorf("%w: %s is longer than %d bytes: not a PIN or auth value file", ErrSource, path, MaxLen)
	}
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		if n > 0 && b[n-1] == '\r' {
			n--
		}
	}
	clear(b[n:])
	b = b[:n]
	if n == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrSource, path)
	}
	return b, nil
}

// pathErr drops the path from an *fs.PathError (the caller names it).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
