package pkcs11

import (
	"fmt"
	"strconv"
	"strings"

	p11 "github.com/miekg/pkcs11"
	pkcs11uri "github.com/stefanberger/go-pkcs11uri"

	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
)

// uriSpec lists the attributes RFC 7512 defines, the only ones (besides
// vendor attributes, "x-...") that ParseURI accepts.
var uriSpec = keyref.Spec{
	Scheme: "pkcs11",
	Path: []string{
		"token", "manufacturer", "serial", "model",
		"library-manufacturer", "library-description", "library-version",
		"object", "type", "id",
		"slot-description", "slot-manufacturer", "slot-id",
	},
	Query: []string{"pin-source", "pin-value", "module-name", "module-path"},
}

// TokenSelector picks a token by the RFC 7512 token and slot attributes. An
// empty field matches anything; all set fields must match. Slot ids change
// between processes on many modules, so SlotID alone is fragile: prefer
// Label or Serial.
type TokenSelector struct {
	Label        string // "token": the token label
	Serial       string // "serial": the token serial number
	Manufacturer string // "manufacturer": the token manufacturer ID
	Model        string // "model": the token model
	SlotID       *uint  // "slot-id": the slot number

	SlotDescription     string // "slot-description"
	SlotManufacturer    string // "slot-manufacturer"
	LibraryManufacturer string // "library-manufacturer"
	LibraryDescription  string // "library-description"
	// LibraryVersion is "library-version": "M.N", or "M", which means M.0
	// (as p11-kit reads it); it must equal the module's CK_INFO
	// libraryVersion.
	LibraryVersion string
}

// KeyRef names a key on a token by CKA_ID ("id"), CKA_LABEL ("object"), or
// both, in which case both must match.
type KeyRef struct {
	ID    []byte
	Label string
}

// IsZero reports whether the reference names nothing.
func (r KeyRef) IsZero() bool { return len(r.ID) == 0 && r.Label == "" }

// String returns the reference as RFC 7512 path attributes, e.g.
// "id=%01;object=k1".
func (r KeyRef) String() string {
	var parts []string
	if len(r.ID) > 0 {
		parts = append(parts, "id="+pctAll(r.ID))
	}
	if r.Label != "" {
		parts = append(parts, "object="+pctPath(r.Label))
	}
	return strings.Join(parts, ";")
}

// URI is a parsed RFC 7512 PKCS#11 URI, as this package reads it:
//
//	pkcs11:token=gw;id=%01;object=k1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gw/pin
//
// Path attributes select the token (token, serial, manufacturer, model,
// slot-id, slot-description, slot-manufacturer, library-manufacturer,
// library-description, library-version) and the key (id, object,
// type=private|public). Query attributes give the module (module-path) and
// the PIN (pin-source: a file as a file: URI or a plain path, or env:NAME
// for an environment variable, read by package keystore/secret; or
// pin-value).
//
// An attribute RFC 7512 does not define is an error naming it, so that a
// typo (tokn=, pin-sorce=) never selects another token or key; vendor
// attributes ("x-...", which RFC 7512 reserves for them) are accepted and
// ignored. module-name (a module looked up by name in directories the
// process trusts) is refused: name the module's file with module-path.
type URI struct {
	Token      TokenSelector
	Key        KeyRef
	ModulePath string // "module-path", "" if absent
	PINSource  string // "pin-source", "" if absent
	// HasPINValue reports whether the URI carried a pin-value. The value
	// itself is kept unexported and never printed.
	HasPINValue bool

	pinValue string
}

// ParseURI parses s. Errors wrap [ErrInvalidURI], name the attribute at
// fault, and never repeat a pin-value.
func ParseURI(s string) (*URI, error) {
	// keyref checks the grammar and the attribute names (RFC 7512's and
	// x- vendor ones); go-pkcs11uri then reads the values as RFC 7512
	// says (slot-id, library-version, module-path must be absolute, ...).
	ref, err := uriSpec.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidURI, err)
	}
	if ref.Has("module-name") {
		return nil, fmt.Errorf("%w: module-name= is not supported (it would load a module found by name): give the module's file with module-path=/path/to/module.so", ErrInvalidURI)
	}
	raw := pkcs11uri.New()
	if err := raw.Parse(s); err != nil {
		if strings.Contains(s, "pin-value") {
			// The library's message may quote the offending attribute.
			return nil, fmt.Errorf("%w: malformed PKCS#11 URI", ErrInvalidURI)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidURI, err)
	}
	u := &URI{}
	get := func(name string) string { v, _ := raw.GetPathAttribute(name, false); return v }
	u.Token = TokenSelector{
		Label:               get("token"),
		Serial:              get("serial"),
		Manufacturer:        get("manufacturer"),
		Model:               get("model"),
		SlotDescription:     get("slot-description"),
		SlotManufacturer:    get("slot-manufacturer"),
		LibraryManufacturer: get("library-manufacturer"),
		LibraryDescription:  get("library-description"),
		LibraryVersion:      get("library-version"),
	}
	if v := u.Token.LibraryVersion; v != "" {
		if _, err := parseVersion(v); err != nil {
			return nil, fmt.Errorf("%w: library-version %q: %v", ErrInvalidURI, v, err)
		}
	}
	if v, ok := raw.GetPathAttribute("slot-id", false); ok {
		n, err := strconv.ParseUint(v, 10, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: slot-id %q is not a number", ErrInvalidURI, v)
		}
		id := uint(n)
		u.Token.SlotID = &id
	}
	if v, ok := raw.GetPathAttribute("id", false); ok {
		u.Key.ID = []byte(v)
	}
	u.Key.Label = get("object")
	if v, ok := raw.GetPathAttribute("type", false); ok && v != "private" && v != "public" {
		return nil, fmt.Errorf("%w: type=%q does not name a key pair (want private or public)", ErrInvalidURI, v)
	}
	u.ModulePath, _ = raw.GetQueryAttribute("module-path", false)
	u.PINSource, _ = raw.GetQueryAttribute("pin-source", false)
	u.pinValue, u.HasPINValue = raw.GetQueryAttribute("pin-value", false)
	return u, nil
}

// String formats the URI back, without any pin-value: it is safe to log.
func (u *URI) String() string {
	var path []string
	add := func(name, v string) {
		if v != "" {
			path = append(path, name+"="+pctPath(v))
		}
	}
	add("token", u.Token.Label)
	add("serial", u.Token.Serial)
	add("manufacturer", u.Token.Manufacturer)
	add("model", u.Token.Model)
	if u.Token.SlotID != nil {
		path = append(path, "slot-id="+strconv.FormatUint(uint64(*u.Token.SlotID), 10))
	}
	add("slot-description", u.Token.SlotDescription)
	add("slot-manufacturer", u.Token.SlotManufacturer)
	add("library-manufacturer", u.Token.LibraryManufacturer)
	add("library-description", u.Token.LibraryDescription)
	add("library-version", u.Token.LibraryVersion)
	if k := u.Key.String(); k != "" {
		path = append(path, k)
	}
	s := "pkcs11:" + strings.Join(path, ";")
	var q []string
	if u.ModulePath != "" {
		q = append(q, "module-path="+pctQuery(u.ModulePath))
	}
	if u.PINSource != "" {
		q = append(q, "pin-source="+pctQuery(u.PINSource))
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

// parseVersion parses a library-version: "M" (meaning M.0) or "M.N", each
// a number below 256 (CK_VERSION's bytes).
func parseVersion(v string) (p11.Version, error) {
	maj, min, hasMinor := strings.Cut(v, ".")
	m, err := strconv.ParseUint(maj, 10, 8)
	if err != nil {
		return p11.Version{}, fmt.Errorf("want MAJOR or MAJOR.MINOR, numbers below 256")
	}
	n := uint64(0)
	if hasMinor {
		if n, err = strconv.ParseUint(min, 10, 8); err != nil {
			return p11.Version{}, fmt.Errorf("want MAJOR or MAJOR.MINOR, numbers below 256")
		}
	}
	return p11.Version{Major: byte(m), Minor: byte(n)}, nil
}

// RedactURI returns s with any pin-value removed, for messages and logs. A
// string that ParseURI refuses is redacted by the reference grammar
// (keyref.Redact): its pin-value is dropped, or the whole string replaced
// by a placeholder when it is too malformed to find it.
func RedactURI(s string) string {
	u, err := ParseURI(s)
	if err != nil {
		return keyref.Redact(s)
	}
	return u.String()
}

// Percent-encoding for RFC 7512: pctAll encodes every byte (for binary ids),
// pctPath and pctQuery leave RFC 7512's unreserved and allowed characters.
func pctAll(b []byte) string {
	const hexd = "0123456789ABCDEF"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte('%')
		sb.WriteByte(hexd[c>>4])
		sb.WriteByte(hexd[c&15])
	}
	return sb.String()
}

func pctPath(s string) string  { return pct(s, ":[]@!$'()*+,=&") }
func pctQuery(s string) string { return pct(s, ":[]@!$'()*+,=/?|") }

func pct(s, allowed string) string {
	const hexd = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', strings.IndexByte(allowed, c) >= 0:
			sb.WriteByte(c)
		default:
			sb.WriteByte('%')
			sb.WriteByte(hexd[c>>4])
			sb.WriteByte(hexd[c&15])
		}
	}
	return sb.String()
}
