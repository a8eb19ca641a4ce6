package pkcs11

import "testing"

// FuzzParseURI checks that any input parses or fails without panicking, and
// that neither the URI's String nor RedactURI ever prints a pin-value.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=gw;id=%01;object=k1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/p",
		"pkcs11:serial=abc;model=SoftHSM%20v2;manufacturer=SoftHSM%20project?pin-value=1234",
		"pkcs11:slot-id=3;id=%00%64?pin-source=env:GW_PIN",
		"pkcs11:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		red := RedactURI(s)
		u, err := ParseURI(s)
		if err != nil {
			return
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
