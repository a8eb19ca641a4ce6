package keyset

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

func TestParseSoftRef(t *testing.T) {
	for ref, want := range map[string]string{
		"soft:file=/etc/k.pem":      "/etc/k.pem",
		"soft:file=/a%3Bb/k%3F.pem": "/a;b/k?.pem",
	} {
		got, err := ParseSoftRef(ref)
		if err != nil || got != want {
			t.Errorf("ParseSoftRef(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, ref := range []string{"soft:", "soft:path=/x", "soft:file=", "soft:file=/x;file=/y", "soft:file=/x?a=b", "pkcs11:id=%01"} {
		if _, err := ParseSoftRef(ref); err == nil {
			t.Errorf("ParseSoftRef(%q) succeeded", ref)
		}
	}
}

// TestSoftRefRoundTrip checks that SoftRef escapes what would split a
// reference and that ParseSoftRef gives the path back.
func TestSoftRefRoundTrip(t *testing.T) {
	const path = "/tmp/a b;c?d&e=f%g#h/ok-_.~:\x01é"
	ref := SoftRef(path)
	if want := "soft:file=/tmp/a%20b%3Bc%3Fd%26e%3Df%25g%23h/ok-_.~:%01%C3%A9"; ref != want {
		t.Errorf("SoftRef = %q, want %q", ref, want)
	}
	if got, err := ParseSoftRef(ref); err != nil || got != path {
		t.Errorf("ParseSoftRef(SoftRef(%q)) = %q, %v", path, got, err)
	}
}

func TestPINValueRefused(t *testing.T) {
	_, err := openPKCS11(context.Background(), "pkcs11:token=a?pin-value=123456", slog.Default())
	if err == nil || strings.Contains(err.Error(), "123456") {
		t.Fatalf("pin-value: %v", err)
	}
}

func TestSet(t *testing.T) {
	ctx := context.Background()
	var refs []string
	var keys []kem.PrivateKey
	for _, id := range []kem.ID{kem.DHKEMP256HKDFSHA256, kem.MLKEM768} {
		k, err := kem.GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := kem.MarshalPrivateKeyPEM(k)
		p := filepath.Join(t.TempDir(), "k.pem")
		os.WriteFile(p, b, 0o600)
		refs = append(refs, "soft:file="+p)
		keys = append(keys, k)
	}
	s, err := Open(ctx, refs, WithPluginName("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := s.Describe(ctx)
	if err != nil || d.Plugin != "test" || len(d.Keys) != 2 || d.Keys[1].KEM != kem.MLKEM768 || d.Keys[0].Backend != "soft" {
		t.Fatalf("Describe: %+v, %v", d, err)
	}
	if _, err := s.ECDH(ctx, "nope", nil); !errors.Is(err, plugins.ErrUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := s.ECDH(ctx, refs[1], nil); !errors.Is(err, kem.ErrUnsupportedKEM) {
		t.Errorf("ECDH on ML-KEM: %v", err)
	}
	if _, err := Open(ctx, []string{refs[0], refs[0]}); err == nil {
		t.Error("a key given twice was accepted")
	}
	if _, err := Open(ctx, []string{"tpm2:bogus"}); err == nil {
		t.Error("a bad tpm2 reference was accepted")
	}
}
