package keyset

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

const (
	softScheme   = "soft"
	pkcs11Scheme = "pkcs11"
	tpm2Scheme   = tpm2.RefScheme
)

// maxKeyFile bounds the size of a soft key file.
const maxKeyFile = 64 << 10

// SoftRef formats the reference of a software key file: "soft:file=PATH",
// with the characters that would end or split the value (';', '?', '&',
// '=', '%', '#', spaces and control characters) percent-encoded, so that
// ParseSoftRef returns path again.
func SoftRef(path string) string {
	var b strings.Builder
	b.WriteString(softScheme + ":file=")
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(";?&=%#", c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ParseSoftRef returns the key file path of a "soft:file=PATH" reference
// (PATH percent-encoded where it contains ';', '?', '%' or '=').
func ParseSoftRef(ref string) (string, error) {
	rest, ok := strings.CutPrefix(ref, softScheme+":")
	if !ok {
		return "", fmt.Errorf("soft reference %q must start with %q", ref, softScheme+":")
	}
	if strings.Contains(rest, "?") {
		return "", fmt.Errorf("soft reference %q: no query attributes are defined", ref)
	}
	var path string
	for _, attr := range strings.Split(rest, ";") {
		k, v, ok := strings.Cut(attr, "=")
		if !ok || k != "file" || path != "" {
			return "", fmt.Errorf("soft reference %q: want exactly one file=PATH", ref)
		}
		p, err := url.PathUnescape(v)
		if err != nil || p == "" {
			return "", fmt.Errorf("soft reference %q: bad file path", ref)
		}
		path = p
	}
	return path, nil
}

// openSoft reads a software key file.
func openSoft(ref string) (kem.PrivateKey, error) {
	path, err := ParseSoftRef(ref)
	if err != nil {
		return nil, err
	}
	return ReadSoftKey(path)
}

// ReadSoftKey reads and parses the soft key file at path (a PEM private key
// of at most 64 KiB; see kem.ParsePrivateKeyPEM). The bytes read are zeroed.
func ReadSoftKey(path string) (kem.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("soft key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	defer clear(b)
	if err != nil {
		return nil, fmt.Errorf("soft key: read %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("soft key: %s is larger than %d bytes", path, maxKeyFile)
	}
	k, err := kem.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("soft key %s: %w", path, err)
	}
	return k, nil
}

// openPKCS11 opens a key by RFC 7512 URI. A pin-value is refused, since the
// URI came from the command line; pin-source=env:NAME is read from this
// process's environment by package pkcs11.
func openPKCS11(ctx context.Context, ref string, logger *slog.Logger) (*pkcs11.Key, error) {
	u, err := pkcs11.ParseURI(ref)
	if err != nil {
		return nil, err
	}
	if u.HasPINValue {
		return nil, fmt.Errorf("%s: a pin-value in a reference is refused (references are command-line arguments); use pin-source=env:NAME or pin-source=file:PATH", pkcs11.RedactURI(ref))
	}
	return pkcs11.OpenKey(ctx, ref, pkcs11.WithLogger(logger))
}

// openTPM2 opens a key by TPM key reference; auth-source=env:NAME and
// file sources are handled by package tpm2.
func openTPM2(ctx context.Context, ref string, logger *slog.Logger) (*tpm2.Key, error) {
	return tpm2.OpenKey(ctx, ref, tpm2.WithLogger(logger))
}
