package pkcs11

import (
	"slices"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
)

// FuzzParseURI checks that any input parses or fails without panicking, and
// that neither the URI's String nor RedactURI ever prints a pin-value.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=gw;id=%01;object=k1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/p",
		"pkcs11:serial=abc;model=SoftHSM%20v2;manufacturer=SoftHSM%20project?pin-value=1234",
		"pkcs11:slot-id=3;id=%00%64?pin-source=env:GW_PIN",
		"pkcs11:",
		"pkcs11:tokn=nosuchtoken;id=%01",
		"pkcs11:token=gw;id=%01?pin-sorce=file:/p",
		"pkcs11:token=gw;x-vendor=1;library-version=2.6?x-q=2&module-name=softhsm2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		red := RedactURI(s)
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		// Nothing RFC 7512 does not define gets through.
		r, err := keyref.Parse(s)
		if err != nil {
			t.Fatalf("ParseURI accepted %q, which keyref refuses: %v", s, err)
		}
		for _, a := range append(r.Path, r.Query...) {
			if !strings.HasPrefix(a.Name, "x-") && !slices.Contains(uriSpec.Path, a.Name) && !slices.Contains(uriSpec.Query, a.Name) || a.Name == "module-name" {
				t.Fatalf("ParseURI accepted %q with attribute %q", s, a.Name)
			}
		}
		if r, err := ParseURI(u.String()); err == nil && r.HasPINValue {
			t.Fatalf("String() of %q prints a pin-value: %q", s, u.String())
		}
		if u.HasPINValue && u.pinValue != "" {
			if r, err := ParseURI(red); err == nil && r.HasPINValue && r.pinValue == u.pinValue {
				t.Fatalf("RedactURI(%q) keeps the pin-value: %q", s, red)
			}
		}
	})
}
