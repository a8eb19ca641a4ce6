// Package keyref is the one grammar of twoway-hsm key references, shared by
// every scheme:
//
//	scheme:name=value;name=value?name=value&name=value
//
// the form RFC 7512 gives PKCS#11 URIs. Path attributes (before '?',
// separated by ';') say which key; query attributes (after '?', separated
// by '&') say how to reach it: the device, and where its PIN or auth value
// is. Values are percent-encoded where they hold a byte the grammar uses.
//
// Parsing is strict: an attribute without '=', an attribute given twice, a
// bad percent-encoding or, with a [Spec], an attribute the scheme does not
// define is an error that names it. RFC 7512 leaves room for vendor
// attributes only with an "x-" prefix; a [Spec] accepts those and nothing
// else unknown, so a typo (tokn=, pin-sorce=) never selects the wrong key.
//
// One attribute is a secret: pin-value. Errors never quote its value, and
// [Redact] removes it from a reference before the reference is printed.
package keyref

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every parse error.
var ErrInvalid = errors.New("invalid key reference")

// parseError is a parse error: its text is the fault alone, so that a
// caller wrapping it with its own "invalid key reference" does not repeat
// it; errors.Is matches it to ErrInvalid.
type parseError struct{ msg string }

func (e *parseError) Error() string        { return e.msg }
func (e *parseError) Is(target error) bool { return target == ErrInvalid }

// PINValue is the attribute that carries a secret inline (RFC 7512's
// pin-value). References are command-line arguments and log fields, so
// twoway-hsm refuses it everywhere but in the CLI's --insecure-pin, which
// takes it out of the reference before anything else sees it.
const PINValue = "pin-value"

// Attr is one attribute of a reference, its value percent-decoded.
type Attr struct {
	Name  string
	Value string
}

// Ref is a parsed reference.
type Ref struct {
	Scheme string
	Path   []Attr
	Query  []Attr
}

func invalid(format string, a ...any) error {
	return &parseError{fmt.Sprintf(format, a...)}
}

// Parse parses s in the grammar of the package documentation, without
// checking which attributes the scheme defines (see [Spec.Parse]). Errors
// wrap [ErrInvalid], name the attribute at fault, and never repeat a
// pin-value.
func Parse(s string) (*Ref, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" {
		return nil, invalid("no scheme: want SCHEME:ATTRIBUTES, e.g. pkcs11:token=gw;id=%%01, tpm2:file=/etc/twoway/gw.pem or soft:file=key.pem")
	}
	if !validName(scheme) {
		return nil, invalid("scheme %q is not a name (lower-case letters, digits and '-')", redactText(scheme))
	}
	r := &Ref{Scheme: scheme}
	path, query, hasQuery := strings.Cut(rest, "?")
	seen := map[string]bool{}
	var err error
	if r.Path, err = parseAttrs(path, ';', "path", seen); err != nil {
		return nil, err
	}
	if hasQuery {
		if query == "" {
			return nil, invalid("empty query after '?'")
		}
		if r.Query, err = parseAttrs(query, '&', "query", seen); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func parseAttrs(s string, sep byte, where string, seen map[string]bool) ([]Attr, error) {
	if s == "" {
		return nil, nil
	}
	var out []Attr
	for _, part := range strings.Split(s, string(sep)) {
		name, raw, ok := strings.Cut(part, "=")
		if !ok {
			if part == "" {
				return nil, invalid("empty %s attribute (two %q in a row, or one at the end)", where, string(sep))
			}
			return nil, invalid("%s attribute %q is not name=value", where, redactText(part))
		}
		if !validName(name) {
			return nil, invalid("%s attribute name %q is not a name (lower-case letters, digits and '-')", where, redactText(name))
		}
		if seen[name] {
			return nil, invalid("attribute %s is given twice", name)
		}
		seen[name] = true
		v, err := unescape(raw)
		if err != nil {
			return nil, invalid("attribute %s: %v", name, err)
		}
		out = append(out, Attr{Name: name, Value: v})
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// redactText returns s, or a placeholder when it mentions pin-value (a
// malformed attribute may hold the PIN).
func redactText(s string) string {
	if strings.Contains(s, PINValue) {
		return "<redacted>"
	}
	return s
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescape decodes RFC 3986 percent-encoding strictly: every '%' starts two
// hex digits.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("bad percent-encoding ('%' must start two hex digits)")
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", errors.New("bad percent-encoding ('%' must start two hex digits)")
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), nil
}

// Get returns the value of the path or query attribute name.
func (r *Ref) Get(name string) (string, bool) {
	for _, a := range r.Path {
		if a.Name == name {
			return a.Value, true
		}
	}
	for _, a := range r.Query {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// Has reports whether the reference has the attribute name.
func (r *Ref) Has(name string) bool {
	_, ok := r.Get(name)
	return ok
}

// SetQuery sets the query attribute name to value, replacing it if present.
func (r *Ref) SetQuery(name, value string) {
	for i, a := range r.Query {
		if a.Name == name {
			r.Query[i].Value = value
			return
		}
	}
	r.Query = append(r.Query, Attr{Name: name, Value: value})
}

// SetPath sets the path attribute name to value, replacing it if present.
func (r *Ref) SetPath(name, value string) {
	for i, a := range r.Path {
		if a.Name == name {
			r.Path[i].Value = value
			return
		}
	}
	r.Path = append(r.Path, Attr{Name: name, Value: value})
}

// Delete removes the attribute name from the path and the query.
func (r *Ref) Delete(name string) {
	r.Path = slices.DeleteFunc(r.Path, func(a Attr) bool { return a.Name == name })
	r.Query = slices.DeleteFunc(r.Query, func(a Attr) bool { return a.Name == name })
}

// String formats the reference: attributes in their order, values
// percent-encoded where they hold anything but unreserved characters and
// the few that read clearly in a value ('/', ':', '@', ',', '+'). A
// pin-value is never printed: String is safe to log.
func (r *Ref) String() string {
	var b strings.Builder
	b.WriteString(r.Scheme)
	b.WriteByte(':')
	n := 0
	for _, a := range r.Path {
		if a.Name == PINValue {
			continue
		}
		if n > 0 {
			b.WriteByte(';')
		}
		n++
		b.WriteString(a.Name + "=" + Escape(a.Value))
	}
	n = 0
	for _, a := range r.Query {
		if a.Name == PINValue {
			continue
		}
		if n == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		n++
		b.WriteString(a.Name + "=" + Escape(a.Value))
	}
	return b.String()
}

// Escape percent-encodes a value for a reference: every byte but the
// unreserved characters and '/', ':', '@', ',', '+'.
func Escape(s string) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~/:@,+", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
		}
	}
	return b.String()
}

// Spec is what one scheme defines: the path and query attributes it knows.
type Spec struct {
	Scheme string
	Path   []string
	Query  []string
}

// Parse parses s and checks it against the spec: the scheme, and that
// every attribute is one the scheme defines in that part of the reference
// or a vendor attribute ("x-..."). Errors wrap [ErrInvalid] and name the
// attribute at fault.
func (sp Spec) Parse(s string) (*Ref, error) {
	r, err := Parse(s)
	if err != nil {
		return nil, err
	}
	if err := sp.Check(r); err != nil {
		return nil, err
	}
	return r, nil
}

// Check checks a parsed reference against the spec (see [Spec.Parse]).
func (sp Spec) Check(r *Ref) error {
	if r.Scheme != sp.Scheme {
		return invalid("scheme %q where %s: was expected", r.Scheme, sp.Scheme)
	}
	check := func(attrs []Attr, known []string, where string, other []string) error {
		for _, a := range attrs {
			if slices.Contains(known, a.Name) || strings.HasPrefix(a.Name, "x-") {
				continue
			}
			if slices.Contains(other, a.Name) {
				otherWhere := "query (after '?')"
				if where != "path" {
					otherWhere = "path (before '?')"
				}
				return invalid("%s belongs in the %s of a %s: reference, not its %s", a.Name, otherWhere, sp.Scheme, where)
			}
			return invalid("unknown %s attribute %q in a %s: reference (known: %s; vendor attributes start with x-)",
				where, a.Name, sp.Scheme, strings.Join(known, ", "))
		}
		return nil
	}
	if err := check(r.Path, sp.Path, "path", sp.Query); err != nil {
		return err
	}
	return check(r.Query, sp.Query, "query", sp.Path)
}

// Redact returns s without any pin-value, for messages and logs. A string
// that does not parse is returned as it is unless it mentions pin-value,
// which is then replaced by a placeholder.
func Redact(s string) string {
	if !strings.Contains(s, PINValue) {
		return s
	}
	r, err := Parse(s)
	if err != nil {
		return "<unparsable reference, redacted>"
	}
	return r.String()
}

// TakePINValue returns s without its pin-value, and the pin-value
// (nil when s has none). Only the CLI's --insecure-pin uses it: the PIN
// then goes to a plugin through its environment, never its argv.
func TakePINValue(s string) (string, []byte, error) {
	if !strings.Contains(s, PINValue) {
		return s, nil, nil
	}
	r, err := Parse(s)
	if err != nil {
		return "", nil, err
	}
	v, ok := r.Get(PINValue)
	if !ok {
		return s, nil, nil
	}
	r.Delete(PINValue)
	return r.String(), []byte(v), nil
}
