package keyref

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	r, err := Parse("tpm2:file=/a%3Bb.pem;handle=0x81000010?tpm=unix:/run/s.sock&auth-source=env:X")
	if err != nil {
		t.Fatal(err)
	}
	if r.Scheme != "tpm2" || len(r.Path) != 2 || len(r.Query) != 2 {
		t.Fatalf("parsed %+v", r)
	}
	if v, _ := r.Get("file"); v != "/a;b.pem" {
		t.Errorf("file = %q", v)
	}
	if v, _ := r.Get("tpm"); v != "unix:/run/s.sock" {
		t.Errorf("tpm = %q", v)
	}
	if got, want := r.String(), "tpm2:file=/a%3Bb.pem;handle=0x81000010?tpm=unix:/run/s.sock&auth-source=env:X"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	id, _ := Parse("pkcs11:id=%01%FF")
	if v, _ := id.Get("id"); v != "\x01\xff" {
		t.Errorf("id = %q", v)
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "no scheme",
		"file=/x":              "no scheme",
		"Soft:file=x":          "not a name",
		"soft:file":            "not name=value",
		"soft:file=a;file=b":   "given twice",
		"soft:file=a?file=b":   "given twice",
		"soft:file=%4":         "percent-encoding",
		"soft:file=%zz":        "percent-encoding",
		"soft:file=a;":         "empty path attribute",
		"soft:file=a?":         "empty query",
		"soft:file=a?b=1&&c=2": "empty query attribute",
		"soft:FILE=a":          "not a name",
	} {
		_, err := Parse(in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid saying %q", in, err, want)
		}
	}
}

// TestSpec: an attribute the scheme does not define is an error naming it
// (RFC 7512 leaves room only for x- vendor attributes), and so is one in
// the wrong part of the reference.
func TestSpec(t *testing.T) {
	sp := Spec{Scheme: "pkcs11", Path: []string{"token", "id"}, Query: []string{"pin-source"}}
	for in, want := range map[string]string{
		"pkcs11:tokn=x;id=%01":                     `unknown path attribute "tokn"`,
		"pkcs11:token=x?pin-sorce=f":               `unknown query attribute "pin-sorce"`,
		"pkcs11:token=x;pin-source=f":              "belongs in the query",
		"pkcs11:token=x?id=%01":                    "belongs in the path",
		"tpm2:file=x":                              "scheme",
		"pkcs11:token=x;x-vendor=1":                "",
		"pkcs11:token=x?x-vendor=1":                "",
		"pkcs11:token=x;id=%01?pin-source=file:/p": "",
	} {
		_, err := sp.Parse(in)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want ErrInvalid saying %q", in, err, want)
		}
	}
}

// TestPINValueNeverPrinted: String, Redact and errors leave a pin-value
// out, and TakePINValue hands it over exactly once.
func TestPINValueNeverPrinted(t *testing.T) {
	const pin = "s3cr3t-PIN"
	ref := "pkcs11:token=gw;id=%01?pin-value=" + pin + "&module-path=/m.so"
	r, err := Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.String(); strings.Contains(s, pin) || strings.Contains(s, PINValue) {
		t.Errorf("String = %q", s)
	}
	if s := Redact(ref); strings.Contains(s, pin) {
		t.Errorf("Redact = %q", s)
	}
	if s := Redact("pkcs11:token=gw?pin-value=" + pin + "&&"); strings.Contains(s, pin) {
		t.Errorf("Redact of a malformed reference = %q", s)
	}
	for _, bad := range []string{"pkcs11:pin-value" + pin, "pkcs11:token=a?pin-value" + pin, "pkcs11:token=a?pin-value=" + pin + "&pin-value=" + pin} {
		if _, err := Parse(bad); err == nil || strings.Contains(err.Error(), pin) {
			t.Errorf("Parse(%q): %v", bad, err)
		}
	}
	clean, v, err := TakePINValue(ref)
	if err != nil || string(v) != pin || strings.Contains(clean, pin) || !strings.Contains(clean, "module-path=/m.so") {
		t.Errorf("TakePINValue = %q, %q, %v", clean, v, err)
	}
	if clean, v, err := TakePINValue("tpm2:file=/k.pem"); err != nil || v != nil || clean != "tpm2:file=/k.pem" {
		t.Errorf("TakePINValue without one = %q, %q, %v", clean, v, err)
	}
}

// FuzzParse: Parse never panics, never repeats a pin-value in an error,
// and String gives a reference that parses to the same attributes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=gw;id=%01;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/p",
		"tpm2:file=/etc/k.pem;handle=0x81000010?tpm=tcp:127.0.0.1:2321&auth-source=env:A",
		"soft:file=/a%3Bb%20c.pem", "soft:dir=/etc", "pkcs11:?pin-value=1234", "x:", "a:b=%", "a:=b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		const marker = "QQ9secretQQ9"
		for _, sep := range []string{"?", "&", ";", ""} {
			if _, err := Parse(s + sep + "pin-value=" + marker); err != nil && strings.Contains(err.Error(), marker) {
				t.Fatalf("error %q repeats the pin-value", err)
			}
		}
		r, err := Parse(s)
		if err != nil {
			return
		}
		if _, ok := r.Get(PINValue); ok && strings.Contains(r.String(), marker) {
			t.Fatalf("String() = %q prints a pin-value", r.String())
		}
		if rs := r.String(); strings.Contains(rs, ":"+PINValue+"=") || strings.Contains(rs, ";"+PINValue+"=") ||
			strings.Contains(rs, "?"+PINValue+"=") || strings.Contains(rs, "&"+PINValue+"=") {
			t.Fatalf("String() = %q prints a pin-value", r.String())
		}
		r2, err := Parse(r.String())
		if err != nil {
			t.Fatalf("String() = %q does not parse: %v", r.String(), err)
		}
		r.Delete(PINValue)
		if r2.String() != r.String() || len(r2.Path) != len(r.Path) || len(r2.Query) != len(r.Query) {
			t.Fatalf("round trip: %q -> %q", r.String(), r2.String())
		}
		for i := range r.Path {
			if r.Path[i] != r2.Path[i] {
				t.Fatalf("path attribute %d: %+v -> %+v", i, r.Path[i], r2.Path[i])
			}
		}
		for i := range r.Query {
			if r.Query[i] != r2.Query[i] {
				t.Fatalf("query attribute %d: %+v -> %+v", i, r.Query[i], r2.Query[i])
			}
		}
	})
}
