package tpm2

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// RefScheme is the scheme of a TPM key reference.
const RefScheme = "tpm2"

// KeyRef is a parsed TPM key reference: one string that says where a key
// is and how to reach it, so a plugin process can open a key from a single
// configuration value. The form follows RFC 7512 (PKCS#11 URIs):
//
//	tpm2:file=/etc/twoway/gw.pem
//	tpm2:file=/etc/twoway/gw.pem?tpm=tcp:127.0.0.1:2321&auth-source=/run/secrets/gw-auth
//	tpm2:handle=0x81000010?tpm=/dev/tpmrm0&auth-source=env:GW_KEY_AUTH
//
// Path attributes, separated by ';', name the key:
//
//	file=PATH      a TSS2 PRIVATE KEY file (see TPM.LoadKeyFile)
//	handle=HANDLE  a persistent handle, hex or decimal (see TPM.OpenHandle)
//	dir=PATH       a directory of key files, for tools that list keys
//
// A key reference ([ParseKeyRef], [OpenKey]) has exactly one of file= and
// handle=. [ParseRef] also reads the other forms operator tools take: file=
// and handle= together (the same key in both places), dir= alone, or no
// path attribute (the TPM itself).
//
// Query attributes, after '?' and separated by '&':
//
//	tpm=TRANSPORT       /dev/tpmrm0 (the default), /dev/tpm0,
//	                    tcp:HOST:PORT or unix:PATH (swtpm)
//	auth-source=SOURCE  where the key's auth value is: a file path
//	                    (also file:PATH), or env:NAME for an environment
//	                    variable. Absent: the key has no auth value.
//
// Values are percent-encoded where they contain ';', '?', '&', '=', '%'
// or non-printable bytes. The auth value itself never appears in a
// reference. Unknown attributes are an error, so typos do not go unnoticed.
type KeyRef struct {
	File       string // key file path, or ""
	Handle     Handle // persistent handle, or 0
	Dir        string // directory of key files (ParseRef only), or ""
	TPM        string // transport; "" means DefaultTransport
	AuthSource string // "", a path, "file:PATH" or "env:NAME"
}

// ParseKeyRef parses a "tpm2:" key reference that names one key: exactly
// one of file= and handle=. Errors wrap [ErrInvalidKeyRef].
func ParseKeyRef(s string) (*KeyRef, error) {
	r, err := ParseRef(s)
	if err != nil {
		return nil, err
	}
	if (r.File == "") == (r.Handle == 0) { // dir= alone has neither
		return nil, refError("want exactly one of file= and handle=")
	}
	return r, nil
}

// refError returns an error wrapping ErrInvalidKeyRef.
func refError(format string, a ...any) error {
	return fmt.Errorf("tpm2: key reference: %w: %s", ErrInvalidKeyRef, fmt.Sprintf(format, a...))
}

// ParseRef parses a "tpm2:" reference in any of the forms operator tools
// use (see [KeyRef]): a key file and/or a persistent handle, a directory of
// key files, or no path attribute at all. Errors wrap [ErrInvalidKeyRef].
func ParseRef(s string) (*KeyRef, error) {
	rest, ok := strings.CutPrefix(s, RefScheme+":")
	if !ok {
		return nil, refError("must start with %q", RefScheme+":")
	}
	path, query, _ := strings.Cut(rest, "?")
	var r KeyRef
	seen := map[string]bool{}
	parse := func(part, sep string, set func(k, v string) error) error {
		if part == "" {
			return nil
		}
		for _, attr := range strings.Split(part, sep) {
			k, v, ok := strings.Cut(attr, "=")
			if !ok || k == "" {
				return refError("attribute %q is not name=value", attr)
			}
			dv, err := url.PathUnescape(v)
			if err != nil {
				return refError("attribute %s: bad percent-encoding", k)
			}
			if seen[k] {
				return refError("attribute %s given twice", k)
			}
			seen[k] = true
			if err := set(k, dv); err != nil {
				return err
			}
		}
		return nil
	}
	err := parse(path, ";", func(k, v string) error {
		switch k {
		case "file":
			if v == "" {
				return refError("empty file")
			}
			r.File = v
		case "handle":
			h, err := ParseHandle(v)
			if err != nil || !h.IsPersistent() {
				return refError("handle %q is not a persistent handle (0x81000000-0x817fffff)", v)
			}
			r.Handle = h
		case "dir":
			if v == "" {
				return refError("empty dir")
			}
			r.Dir = v
		default:
			return refError("unknown path attribute %q (want file=, handle= or dir=)", k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = parse(query, "&", func(k, v string) error {
		switch k {
		case "tpm":
			if _, err := parseTransport(v); err != nil {
				return refError("tpm=%q is not a transport: want /dev/tpmrm0, /dev/tpm0, tcp:HOST:PORT or unix:/path", v)
			}
			r.TPM = v
		case "auth-source":
			if v == "" {
				return refError("empty auth-source")
			}
			r.AuthSource = v
		default:
			return refError("unknown query attribute %q", k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if r.Dir != "" && (r.File != "" || r.Handle != 0) {
		return nil, refError("dir= names a directory of key files; it does not go with file= or handle=")
	}
	return &r, nil
}

// String formats the reference in its canonical form.
func (r *KeyRef) String() string {
	var b strings.Builder
	b.WriteString(RefScheme + ":")
	var path []string
	if r.File != "" {
		path = append(path, "file="+escapeRef(r.File))
	}
	if r.Handle != 0 {
		path = append(path, "handle="+r.Handle.String())
	}
	if r.Dir != "" {
		path = append(path, "dir="+escapeRef(r.Dir))
	}
	b.WriteString(strings.Join(path, ";"))
	sep := "?"
	if r.TPM != "" {
		b.WriteString(sep + "tpm=" + escapeRef(r.TPM))
		sep = "&"
	}
	if r.AuthSource != "" {
		b.WriteString(sep + "auth-source=" + escapeRef(r.AuthSource))
	}
	return b.String()
}

// escapeRef percent-encodes everything except unreserved characters and
// the few that are harmless in a value ('/', ':', '@', ',', '+').
func escapeRef(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~/:@,+", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// AuthOption returns the Option that reads the key's auth value from the
// reference's auth-source: [WithAuthEnv] for env:NAME, [WithAuthFile] for
// a path or file:PATH, and nil (no auth value) when there is none. Open,
// OpenKey and the key operations ignore a nil Option.
func (r *KeyRef) AuthOption() Option {
	switch src := r.AuthSource; {
	case src == "":
		return nil
	case strings.HasPrefix(src, "env:"):
		return WithAuthEnv(strings.TrimPrefix(src, "env:"))
	default:
		return WithAuthFile(strings.TrimPrefix(src, "file:"))
	}
}

// OpenKey opens the key that ref names (see [KeyRef]): it connects to the
// TPM the reference names (sharing the connection with other keys on the
// same transport in this process), reads the auth value from its source,
// and loads the key file or opens the persistent handle. Options given here
// override the reference's auth-source (WithAuth, WithAuthFile,
// WithAuthEnv) and configure the connection if it is the first one (see
// [Open]). Key.Close releases everything OpenKey acquired.
func OpenKey(ctx context.Context, ref string, opts ...Option) (*Key, error) {
	r, err := ParseKeyRef(ref)
	if err != nil {
		return nil, err
	}
	all := append([]Option{r.AuthOption()}, opts...)
	t, err := Open(ctx, r.TPM, all...)
	if err != nil {
		return nil, err
	}
	// The key holds its own reference on the connection.
	defer t.Close()
	if r.File != "" {
		return t.LoadKeyFile(ctx, r.File, all...)
	}
	return t.OpenHandle(ctx, r.Handle, all...)
}
