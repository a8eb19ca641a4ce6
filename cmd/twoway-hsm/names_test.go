package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
)

func TestParseTPMRef(t *testing.T) {
	for in, want := range map[string]tpmRef{
		"tpm2:file=/k.pem": {File: "/k.pem"},
		"tpm2:file=/a%3Bb.pem?tpm=tcp:127.0.0.1:2321": {File: "/a;b.pem", TPM: "tcp:127.0.0.1:2321"},
		"tpm2:file=/k.pem;handle=0x81000010":          {File: "/k.pem", Handle: 0x81000010},
		"tpm2:handle=2164260880?auth-source=env:X":    {Handle: 0x81000010, AuthSource: "env:X"},
		"tpm2:":                              {},
		"tpm2:?tpm=unix:/run/swtpm.sock":     {TPM: "unix:/run/swtpm.sock"},
		"tpm2:dir=/etc/twoway?tpm=/dev/tpm0": {Dir: "/etc/twoway", TPM: "/dev/tpm0"},
		"tpm2:file=/k.pem?tpm=/dev/tpmrm0&auth-source=/a/auth": {File: "/k.pem", TPM: "/dev/tpmrm0", AuthSource: "/a/auth"},
	} {
		got, err := parseTPMRef(in)
		if err != nil || *got != want {
			t.Errorf("parseTPMRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{
		"tpm:file=/k", "tpm2:file=", "tpm2:file=/a;file=/b", "tpm2:handle=0x01000000", "tpm2:handle=nope",
		"tpm2:key=/k", "tpm2:file=/k?tpm=bogus", "tpm2:file=/k?colour=red", "tpm2:dir=/d;file=/k", "tpm2:file=%zz",
	} {
		if _, err := parseTPMRef(in); err == nil || !isUsage(err) {
			t.Errorf("parseTPMRef(%q): %v, want a usage error", in, err)
		}
	}
	// The references it makes parse back with the library.
	r := &tpmRef{File: "/k;1.pem", Handle: 0x81000010, TPM: "tcp:127.0.0.1:2321", AuthSource: "env:A"}
	for _, s := range []string{r.fileRef(), r.handleRef()} {
		if _, err := tpm2.ParseKeyRef(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}

func TestAbsSource(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"":               "",
		"env:PIN":        "env:PIN",
		"/etc/pin":       "/etc/pin",
		"file:/etc/pin":  "file:/etc/pin",
		"pin":            filepath.Join(wd, "pin"),
		"file:a/pin":     "file:" + filepath.Join(wd, "a/pin"),
		"file:///etc/pn": "file:///etc/pn",
	} {
		if got := absSource(in); got != want {
			t.Errorf("absSource(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSoftRef(t *testing.T) {
	if r, err := parseSoftRef("soft:file=/a%3Bb.pem"); err != nil || r.File != "/a;b.pem" {
		t.Errorf("file: %+v %v", r, err)
	}
	if r, err := parseSoftRef("soft:dir=/etc/twoway"); err != nil || r.Dir != "/etc/twoway" {
		t.Errorf("dir: %+v %v", r, err)
	}
	for _, in := range []string{"soft:", "soft:dir=", "soft:dir=/a;file=/b", "soft:file=/a?x=y", "soft:path=/a"} {
		if _, err := parseSoftRef(in); err == nil || !isUsage(err) {
			t.Errorf("parseSoftRef(%q): %v, want a usage error", in, err)
		}
	}
	// softFileRef escapes what would split the reference
	ref := softFileRef("/tmp/a;b?c=d%e f.pem")
	r, err := parseSoftRef(ref)
	if err != nil || r.File != "/tmp/a;b?c=d%e f.pem" {
		t.Errorf("%s: %+v %v", ref, r, err)
	}
}

func TestSchemeAndRedaction(t *testing.T) {
	for in, want := range map[string]string{"pkcs11:token=a": "pkcs11", "tpm2:file=/k": "tpm2", "soft:file=/k": "soft"} {
		if got, err := schemeOf(in); err != nil || got != want {
			t.Errorf("schemeOf(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "noscheme", "file:/k", ":x"} {
		if _, err := schemeOf(in); err == nil || !isUsage(err) {
			t.Errorf("schemeOf(%q): %v", in, err)
		}
	}
	_, err := schemeOf("hsm:x?pin-value=s3cret")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("an unknown scheme's error repeats a pin-value: %v", err)
	}
	if s := safeRef("pkcs11:token=a;id=%01?pin-value=s3cret&module-path=/m.so"); strings.Contains(s, "s3cret") {
		t.Errorf("safeRef kept the pin-value: %s", s)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":              "plain",
		"soft:file=/a/b.pem": "soft:file=/a/b.pem",
		"a;b":                "'a;b'",
		"it's":               `'it'\''s'`,
		"":                   "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
