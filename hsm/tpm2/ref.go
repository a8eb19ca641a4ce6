package tpm2

import (
	"context"
	"fmt"

	keyfile "github.com/foxboron/go-tpm-keyfiles"

	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
	"github.com/twoway-hsm/twoway-hsm/keystore/secret"
)

// RefScheme is the scheme of a TPM key reference.
const RefScheme = "tpm2"

// The attributes of a TPM reference.
const (
	AttrFile       = "file"
	AttrHandle     = "handle"
	AttrDir        = "dir"
	AttrTPM        = "tpm"
	AttrAuthSource = "auth-source"
	AttrAllowSign  = "allow-sign"
)

// RefSpec is the grammar of TPM references (package keystore/keyref):
// the path and query attributes [KeyRef] describes, and vendor
// attributes (x-...), which are ignored.
var RefSpec = keyref.Spec{
	Scheme: RefScheme,
	Path:   []string{AttrFile, AttrHandle, AttrDir},
	Query:  []string{AttrTPM, AttrAuthSource, AttrAllowSign},
}

// KeyRef is a parsed TPM reference: one string that says where a key is
// and how to reach it, so a plugin process can open a key from a single
// configuration value. It follows the grammar every twoway-hsm reference
// follows (package keystore/keyref, after RFC 7512's PKCS#11 URIs):
//
//	tpm2:file=/etc/twoway/gw.pem
//	tpm2:file=/etc/twoway/gw.pem?tpm=tcp:127.0.0.1:2321&auth-source=file:/run/secrets/gw-auth
//	tpm2:handle=0x81000010?tpm=/dev/tpmrm0&auth-source=env:GW_KEY_AUTH
//
// Path attributes, separated by ';', name the key:
//
//	file=PATH      a TSS2 PRIVATE KEY file (see TPM.LoadKeyFile)
//	handle=HANDLE  a persistent handle, hex or decimal (see TPM.OpenHandle)
//	dir=PATH       a directory of key files, for tools that list keys
//
// [OpenKey] takes exactly one of file= and handle=. Operator tools also
// take file= and handle= together (the same key in both places), dir=
// alone, or no path attribute (the TPM itself); [KeyRef.Key] tells these
// apart.
//
// Query attributes, after '?' and separated by '&':
//
//	tpm=TRANSPORT       /dev/tpmrm0 (the default), /dev/tpm0,
//	                    tcp:HOST:PORT or unix:PATH (swtpm's data channel)
//	auth-source=SOURCE  where the key's auth value is: file:PATH (or a
//	                    bare path) or env:NAME, read by package
//	                    keystore/secret. Absent: the key has no auth value
//	                    (a key file that records one is then refused).
//	allow-sign=true     accept a decryption key that can also sign
//	                    (see WithAllowSign)
//
// Values are percent-encoded where they contain ';', '?', '&', '=', '%'
// or non-printable bytes. The auth value itself never appears in a
// reference. An unknown attribute is an error that names it; vendor
// attributes (x-...) are accepted and ignored.
type KeyRef struct {
	File   string // key file path, or ""
	Handle Handle // persistent handle, or 0
	Dir    string // directory of key files, or ""
	TPM    string // transport; "" means DefaultTransport
	// AuthSource is where the auth value is, in canonical form
	// ("file:/abs/path" or "env:NAME"; see secret.Canonical), or "".
	AuthSource string
	AllowSign  bool // allow-sign=true
}

// refError returns an error wrapping ErrInvalidKeyRef.
func refError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidKeyRef, fmt.Sprintf(format, a...))
}

// ParseRef parses a "tpm2:" reference in any of the forms [KeyRef]
// describes. The auth-source is checked and made canonical (file:/abs or
// env:NAME); nothing is read. Errors wrap [ErrInvalidKeyRef] and
// keyref.ErrInvalid, and name the attribute at fault.
func ParseRef(s string) (*KeyRef, error) {
	r, err := RefSpec.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeyRef, err)
	}
	var k KeyRef
	for _, a := range append(append([]keyref.Attr{}, r.Path...), r.Query...) {
		v := a.Value
		switch a.Name {
		case AttrFile:
			if v == "" {
				return nil, refError("empty file=")
			}
			k.File = v
		case AttrHandle:
			h, err := ParseHandle(v)
			if err != nil || !h.IsPersistent() {
				return nil, refError("handle=%s is not a persistent handle (0x81000000-0x817fffff)", v)
			}
			k.Handle = h
		case AttrDir:
			if v == "" {
				return nil, refError("empty dir=")
			}
			k.Dir = v
		case AttrTPM:
			if _, err := parseTransport(v); err != nil {
				return nil, refError("tpm=%s is not a transport: want /dev/tpmrm0, /dev/tpm0, tcp:HOST:PORT or unix:/path (swtpm's data channel)", v)
			}
			k.TPM = v
		case AttrAuthSource:
			src, err := secret.Canonical(v)
			if err != nil {
				return nil, refError("auth-source: %v", err)
			}
			k.AuthSource = src
		case AttrAllowSign:
			switch v {
			case "true":
				k.AllowSign = true
			case "false":
			default:
				return nil, refError("allow-sign=%s: want true or false", v)
			}
		}
	}
	if k.Dir != "" && (k.File != "" || k.Handle != 0) {
		return nil, refError("dir= names a directory of key files; it does not go with file= or handle=")
	}
	return &k, nil
}

// Key reports whether the reference names a key: a file, a persistent
// handle or both (not a directory or the TPM alone).
func (r *KeyRef) Key() bool { return r.File != "" || r.Handle != 0 }

// Transport returns the reference's transport, [DefaultTransport] when it
// names none.
func (r *KeyRef) Transport() string {
	if r.TPM == "" {
		return DefaultTransport
	}
	return r.TPM
}

// String formats the reference in its canonical form: the auth-source as
// file:/abs/path or env:NAME.
func (r *KeyRef) String() string {
	k := keyref.Ref{Scheme: RefScheme}
	if r.File != "" {
		k.SetPath(AttrFile, r.File)
	}
	if r.Handle != 0 {
		k.SetPath(AttrHandle, r.Handle.String())
	}
	if r.Dir != "" {
		k.SetPath(AttrDir, r.Dir)
	}
	if r.TPM != "" {
		k.SetQuery(AttrTPM, r.TPM)
	}
	if r.AuthSource != "" {
		src, err := secret.Canonical(r.AuthSource)
		if err != nil {
			src = r.AuthSource // not a valid source: printed as it is, and refused when parsed
		}
		k.SetQuery(AttrAuthSource, src)
	}
	if r.AllowSign {
		k.SetQuery(AttrAllowSign, "true")
	}
	return k.String()
}

// Options returns the Options the reference asks for: the auth value from
// its auth-source ([WithAuthFile] or [WithAuthEnv]; none without one) and
// [WithAllowSign] with allow-sign=true. Open, OpenKey and the key
// operations ignore nil Options.
func (r *KeyRef) Options() []Option {
	var out []Option
	if r.AuthSource != "" {
		if s, err := secret.Parse(r.AuthSource); err != nil {
			out = append(out, func(c *config) {
				c.authSrc = func() ([]byte, error) { return nil, fmt.Errorf("%w: %w", ErrInvalidAuth, err) }
			})
		} else {
			out = append(out, withAuthSource(s.Abs()))
		}
	}
	if r.AllowSign {
		out = append(out, WithAllowSign())
	}
	return out
}

// OpenKey opens the key that ref names (see [KeyRef]; exactly one of file=
// and handle=): it connects to the TPM the reference names (sharing the
// connection with other keys on the same transport in this process),
// reads the auth value from its source, and loads the key file or opens
// the persistent handle. A key file that records an auth value, opened
// with no source for one (auth-source=, WithAuth, WithAuthFile,
// WithAuthEnv, WithAuthPrompt), is refused with [ErrAuthRequired] before
// the TPM is reached. Options given here override the reference's and
// configure the connection if it is the first one (see [Open]).
// Key.Close releases everything OpenKey acquired.
func OpenKey(ctx context.Context, ref string, opts ...Option) (*Key, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	switch {
	case !r.Key():
		return nil, refError("%s names no key: want file=PATH or handle=0x81......", r)
	case r.File != "" && r.Handle != 0:
		return nil, refError("%s names the key twice (file= and handle=): open it by one of them", r)
	}
	all := append(r.Options(), opts...)
	var kf *keyfile.TPMKey
	if r.File != "" {
		// The file first: a missing one, or one whose key needs an auth
		// value that nothing gives, is refused before the TPM is reached.
		file, err := readKeyFile(r.File)
		if err != nil {
			return nil, err
		}
		if kf, err = parseKeyFile(file); err != nil {
			return nil, fmt.Errorf("tpm2: load %s: %w", r.File, err)
		}
		if cfg := newConfig(all); !kf.EmptyAuth && cfg.authSrc == nil && cfg.authPrompt == nil {
			return nil, fmt.Errorf("tpm2: open %s: %w (its key file records one) and the reference names no source: add auth-source=file:PATH or auth-source=env:NAME", r.File, ErrAuthRequired)
		}
	}
	t, err := Open(ctx, r.TPM, all...)
	if err != nil {
		return nil, err
	}
	// The key holds its own reference on the connection.
	defer t.Close()
	if kf != nil {
		k, err := t.loadKey(ctx, kf, all)
		if err != nil {
			return nil, fmt.Errorf("tpm2: load %s: %w", r.File, err)
		}
		return k, nil
	}
	return t.OpenHandle(ctx, r.Handle, all...)
}
