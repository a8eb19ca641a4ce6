package pkcs11

import (
	"fmt"
	"strconv"
	"strings"

	pkcs11uri "github.com/stefanberger/go-pkcs11uri"
)

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
// library-description) and the key (id, object, type=private|public).
// Query attributes give the module (module-path) and the PIN (pin-source: a
// file as a file: URI or a plain path, or env:NAME for an environment
// variable; or pin-value). Unknown attributes are ignored, as RFC 7512 asks.
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

// ParseURI parses s. Errors wrap [ErrInvalidURI] and never repeat a
// pin-value.
func ParseURI(s string) (*URI, error) {
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

// RedactURI returns s with any pin-value removed, for messages and logs. A
// string that does not parse is replaced by a placeholder when it mentions
// pin-value.
func RedactURI(s string) string {
	u, err := ParseURI(s)
	if err != nil {
		if strings.Contains(s, "pin-value") {
			return "pkcs11:<unparsable, redacted>"
		}
		return s
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
