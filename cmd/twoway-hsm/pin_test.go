package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPINFileLineBreak: --pin-file drops one trailing line break, as
// hsm/pkcs11 and hsm/tpm2 do with the pin-source and auth-source files that
// the printed references name, so that a reference works as the command did.
func TestPINFileLineBreak(t *testing.T) {
	env := &environment{stdinFd: -1, getenv: func(string) string { return "" }}
	for content, want := range map[string]string{
		"1234":      "1234",
		"1234\n":    "1234",
		"1234\r\n":  "1234",
		"1234\n\n":  "1234\n",
		" 12 34 \n": " 12 34 ",
	} {
		p := filepath.Join(t.TempDir(), "pin")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		s := secretFlags{file: p}
		got, ok, err := s.secret(env, "pkcs11:token=t", "PIN")
		if err != nil || !ok || got != want {
			t.Errorf("PIN file %q: %q, %v, %v; want %q", content, got, ok, err, want)
		}
	}
	p := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (&secretFlags{file: p}).secret(env, "pkcs11:token=t", "PIN"); err == nil {
		t.Error("an empty PIN file gave a PIN")
	}
}
