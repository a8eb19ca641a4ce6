package softstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
)

// TestRefRoundTrip: Ref escapes what would split a reference, and the
// store reads the path back.
func TestRefRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a b;c?d&e=f%g#h-ok_.~:é.pem")
	ref := Ref(path)
	if strings.ContainsAny(strings.TrimPrefix(ref, "soft:file="), ";?&=# ") {
		t.Errorf("Ref(%q) = %q: separators left unescaped", path, ref)
	}
	info, err := Store{}.Create(context.Background(), ref, kem.DHKEMX25519HKDFSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the key file is not at %q: %v", path, err)
	}
	if info.Ref != ref {
		t.Errorf("info.Ref = %q, want %q", info.Ref, ref)
	}
}

// TestBadRefs: every malformed reference is an ErrInvalidRef naming what
// is wrong, before any file is touched; an unknown attribute is never
// ignored.
func TestBadRefs(t *testing.T) {
	for ref, want := range map[string]string{
		"soft:":                 "want soft:file=PATH",
		"soft:path=/x":          `unknown path attribute "path"`,
		"soft:fiel=/x":          `unknown path attribute "fiel"`,
		"soft:file=":            "empty path",
		"soft:file=/x;file=/y":  "given twice",
		"soft:file=/x?tpm=a":    `unknown query attribute "tpm"`,
		"soft:file=/x;dir=/y":   "not both",
		"soft:file=/x%zz":       "percent-encoding",
		"soft:file=/x?":         "empty query",
		"soft:file=/x;;dir=/y":  "empty path attribute",
		"soft:file=/x?x-vend=1": "", // vendor attributes are allowed
	} {
		_, err := Store{}.Show(context.Background(), ref, nil)
		if want == "" {
			if errors.Is(err, keystore.ErrInvalidRef) {
				t.Errorf("%s: %v, want it accepted", ref, err)
			}
			continue
		}
		if !errors.Is(err, keystore.ErrInvalidRef) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrInvalidRef saying %q", ref, err, want)
		}
	}
	if _, err := (Store{}).Show(context.Background(), "soft:file=/x?pin-value=1234", nil); !errors.Is(err, keystore.ErrInlineSecret) || strings.Contains(err.Error(), "1234") {
		t.Errorf("pin-value: %v", err)
	}
}

func TestVerbs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := Store{}
	ref := Ref(filepath.Join(dir, "k.pem"))
	created, err := st.Create(ctx, ref, kem.DHKEMP256HKDFSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "k.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	if _, err := st.Create(ctx, ref, kem.DHKEMP256HKDFSHA256, nil); !errors.Is(err, keystore.ErrExists) {
		t.Errorf("second create: %v, want ErrExists", err)
	}
	shown, err := st.Show(ctx, ref, nil)
	if err != nil || !bytes.Equal(shown.PublicKey, created.PublicKey) || shown.KEM != kem.DHKEMP256HKDFSHA256 || !shown.Usable {
		t.Fatalf("show: %+v, %v", shown, err)
	}
	id, pub, err := st.Public(ctx, ref, nil)
	if err != nil || id != created.KEM || !bytes.Equal(pub, created.PublicKey) {
		t.Errorf("public: %v %x %v", id, pub, err)
	}
	k, err := st.Open(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.(kem.Exchanger); !ok {
		t.Error("an opened P-256 key is not a kem.Exchanger")
	}
	k.Close()

	// Import the same key bytes under another name: same public key.
	m, err := keystore.ReadMaterial(filepath.Join(dir, "k.pem"), 0)
	if err != nil {
		t.Fatal(err)
	}
	imported, err := st.Import(ctx, Ref(filepath.Join(dir, "k2.pem")), m, nil)
	m.Wipe()
	if err != nil || !bytes.Equal(imported.PublicKey, created.PublicKey) {
		t.Fatalf("import: %v", err)
	}

	// A file that is not a key is listed as unusable if it is a PEM
	// private key, and not at all otherwise.
	os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o600)
	l, err := st.List(ctx, "soft:dir="+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var usable, unusable int
	for _, k := range l.Keys {
		if k.Usable {
			usable++
		} else {
			unusable++
		}
	}
	if usable != 2 || unusable != 1 {
		t.Errorf("list: %d usable, %d unusable, want 2 and 1", usable, unusable)
	}
	if _, err := st.List(ctx, ref, nil); !errors.Is(err, keystore.ErrInvalidRef) {
		t.Errorf("list of a file: %v, want ErrInvalidRef", err)
	}

	// Delete asks first, and removes only soft key files.
	no := errors.New("no")
	if _, err := st.Delete(ctx, ref, func(*keystore.KeyInfo) error { return no }, nil); !errors.Is(err, no) {
		t.Errorf("delete refused: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "k.pem")); err != nil {
		t.Fatal("a refused delete removed the file")
	}
	yes := func(*keystore.KeyInfo) error { return nil }
	if _, err := st.Delete(ctx, Ref(filepath.Join(dir, "bad.pem")), yes, nil); err == nil {
		t.Error("deleted a file that is not a soft key")
	}
	if d, err := st.Delete(ctx, ref, yes, nil); err != nil || len(d.Deleted) != 1 {
		t.Fatalf("delete: %v", err)
	}
	if _, err := st.Show(ctx, ref, nil); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("show after delete: %v, want ErrNotFound", err)
	}
}
