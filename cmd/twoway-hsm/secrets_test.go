package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/keystore"
)

// TestResolve: the secret flags become the reference's own source, named
// as the key store reads it (the CLI reads no secret itself), and a
// pin-value is taken out of the reference only with --insecure-pin.
func TestResolve(t *testing.T) {
	wd, _ := os.Getwd()
	pkcs11 := &keystore.Backend{Scheme: "pkcs11", SecretAttr: "pin-source", SecretRequired: true}
	tpm := &keystore.Backend{Scheme: "tpm2", SecretAttr: "auth-source"}
	soft := &keystore.Backend{Scheme: "soft"}
	env := &environment{stdinFd: -1, getenv: func(string) string { return "" }}
	resolve := func(flags secretFlags, ref string, b *keystore.Backend) (*resolved, error) {
		c := newSecretCmd(env, "test", "")
		c.secrets = flags
		return c.resolve(ref, b)
	}
	for _, tc := range []struct {
		flags secretFlags
		ref   string
		b     *keystore.Backend
		want  string
	}{
		{secretFlags{file: "gw.pin"}, "pkcs11:token=gw;id=%01", pkcs11, "pkcs11:token=gw;id=%01?pin-source=file:" + filepath.Join(wd, "gw.pin")},
		{secretFlags{env: "GW_PIN"}, "pkcs11:token=gw?module-path=/m.so", pkcs11, "pkcs11:token=gw?module-path=/m.so&pin-source=env:GW_PIN"},
		{secretFlags{file: "/run/a"}, "tpm2:file=/k.pem?tpm=unix:/s", tpm, "tpm2:file=/k.pem?tpm=unix:/s&auth-source=file:/run/a"},
		{secretFlags{}, "soft:file=/k.pem", soft, "soft:file=/k.pem"},
	} {
		r, err := resolve(tc.flags, tc.ref, tc.b)
		if err != nil || r.ref != tc.want {
			t.Errorf("%+v %s: %v, %v; want %s", tc.flags, tc.ref, r, err, tc.want)
		}
	}
	for _, tc := range []struct {
		flags secretFlags
		ref   string
		b     *keystore.Backend
		want  string
	}{
		{secretFlags{file: "a", env: "B"}, "pkcs11:token=gw", pkcs11, "not both"},
		{secretFlags{file: "a"}, "pkcs11:token=gw?pin-source=env:X", pkcs11, "names its own"},
		{secretFlags{file: "a"}, "soft:file=/k.pem", soft, "do not apply"},
		{secretFlags{env: "A B"}, "tpm2:file=/k", tpm, "name of an environment variable"},
		{secretFlags{}, "pkcs11:token=gw?pin-value=1234", pkcs11, "--insecure-pin"},
		{secretFlags{insecure: true, file: "a"}, "pkcs11:token=gw?pin-value=1234", pkcs11, "names its own"},
	} {
		_, err := resolve(tc.flags, tc.ref, tc.b)
		if err == nil || !isUsage(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "1234") {
			t.Errorf("%+v %s: %v, want a usage error saying %q", tc.flags, tc.ref, err, tc.want)
		}
	}

	// --insecure-pin: the reference loses its pin-value; the PIN goes to
	// the store through Options.Secret, and to a plugin through its
	// environment, never its argv.
	c := newSecretCmd(env, "test", "")
	c.secrets.insecure = true
	r, err := c.resolve("pkcs11:token=gw;id=%01?pin-value=1234&module-path=/m.so", pkcs11)
	if err != nil || strings.Contains(r.ref, "1234") || strings.Contains(r.ref, "pin-value") {
		t.Fatalf("resolve: %+v, %v", r, err)
	}
	got, err := c.options(r).Secret("PIN")
	if err != nil || string(got) != "1234" {
		t.Errorf("Options.Secret = %q, %v", got, err)
	}
	pref, penv, err := c.forPlugin(r)
	if err != nil || strings.Contains(pref, "1234") || pref != "pkcs11:token=gw;id=%01?module-path=/m.so&pin-source=env:"+pluginSecretEnv ||
		len(penv) != 1 || penv[0] != pluginSecretEnv+"=1234" {
		t.Errorf("forPlugin = %q, %q, %v", pref, penv, err)
	}
	r.wipe()
	if string(r.inline) != "\x00\x00\x00\x00" {
		t.Errorf("wipe left %q", r.inline)
	}
	// Without a terminal and without a source, no secret is asked for.
	r, _ = resolve(secretFlags{}, "pkcs11:token=gw", pkcs11)
	if o := c.options(r); o.Secret != nil {
		t.Error("a prompt without a terminal")
	}
}
