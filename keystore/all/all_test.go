package all

import (
	"errors"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/keystore"
)

// TestCheck: every built-in store checks a reference to one key without a
// device, refusing typos, references that name no key and pin-values.
func TestCheck(t *testing.T) {
	for _, ref := range []string{
		"pkcs11:token=gw;id=%01?module-path=/m.so&pin-source=env:P",
		"tpm2:file=/etc/twoway/gw.pem?tpm=unix:/run/s&auth-source=env:A",
		"tpm2:handle=0x81000010",
		"soft:file=/k.pem",
	} {
		if err := keystore.Check(ref); err != nil {
			t.Errorf("Check(%q) = %v", ref, err)
		}
	}
	for ref, want := range map[string]error{
		"pkcs11:tokn=gw;id=%01":                 keystore.ErrInvalidRef,
		"pkcs11:token=gw":                       keystore.ErrInvalidRef, // no key
		"pkcs11:token=gw;id=%01?pin-value=1234": keystore.ErrInlineSecret,
		"tpm2:dir=/etc":                         keystore.ErrInvalidRef,
		"tpm2:file=/a;handle=0x81000010":        keystore.ErrInvalidRef,
		"tpm2:file=/a?auth-sorce=env:A":         keystore.ErrInvalidRef,
		"soft:dir=/etc":                         keystore.ErrInvalidRef,
		"hsm:x":                                 keystore.ErrUnknownScheme,
		"nothing":                               keystore.ErrInvalidRef,
	} {
		err := keystore.Check(ref)
		if !errors.Is(err, want) || strings.Contains(err.Error(), "1234") {
			t.Errorf("Check(%q) = %v, want %v", ref, err, want)
		}
	}
	if n := len(keystore.Backends()); n != 3 {
		t.Errorf("%d stores registered, want 3", n)
	}
}
