package keyset

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// TestPINValueRefused: a reference with a pin-value is refused before any
// key is opened, and the error does not repeat the PIN.
func TestPINValueRefused(t *testing.T) {
	for _, ref := range []string{"pkcs11:token=a?pin-value=123456", "soft:file=/x?pin-value=123456"} {
		_, err := Open(context.Background(), []string{ref})
		if !errors.Is(err, keystore.ErrInlineSecret) || strings.Contains(err.Error(), "123456") {
			t.Errorf("%s: %v, want keystore.ErrInlineSecret without the PIN", ref, err)
		}
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
