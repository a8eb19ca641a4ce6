package tpm2

import "testing"

// FuzzParseRef checks that any input parses or fails without panicking, and
// that what parses prints as a reference that parses back to the same.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"tpm2:file=/etc/twoway/gw.pem",
		"tpm2:file=/etc/twoway/gw.pem?tpm=tcp:127.0.0.1:2321&auth-source=/run/secrets/gw-auth",
		"tpm2:handle=0x81000010?tpm=/dev/tpmrm0&auth-source=env:GW_KEY_AUTH",
		"tpm2:file=/a%3Bb.pem;handle=0x81000011",
		"tpm2:dir=/keys?tpm=unix:/run/swtpm.sock",
		"tpm2:?tpm=/dev/tpm0",
		"tpm2:file=/a?auth-source=//srv/a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		again, err := ParseRef(r.String())
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", s, r.String(), err)
		}
		if *again != *r {
			t.Fatalf("%q: %+v printed as %q, parsed back as %+v", s, *r, r.String(), *again)
		}
	})
}
