package tpm2store

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkECDH opens ref and checks its ECDH with a fresh software peer
// against the peer's side; the key is closed again.
func checkECDH(t testing.TB, ref string, o *keystore.Options) {
	t.Helper()
	k, err := Store{}.Open(testCtx(t), ref, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", ref, err)
	}
	defer k.Close()
	x := k.(kem.Exchanger)
	curve := x.KEM().Curve()
	peer, _ := curve.GenerateKey(rand.Reader)
	got, err := x.ECDHContext(testCtx(t), peer.PublicKey().Bytes())
	if err != nil {
		t.Fatalf("ECDH: %v", err)
	}
	pub, err := curve.NewPublicKey(x.PublicKeyBytes())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := peer.ECDH(pub)
	if !bytes.Equal(got, want) {
		t.Fatalf("ECDH mismatch")
	}
}

func field(i *keystore.KeyInfo, name string) string {
	for _, f := range i.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func TestRegistered(t *testing.T) {
	b, err := keystore.Lookup("tpm2:file=/k.pem")
	if err != nil {
		t.Fatal(err)
	}
	if b.Summary != "a TPM 2.0 key (key file or persistent handle)" || b.SecretAttr != "auth-source" || b.SecretRequired || b.Hint == nil {
		t.Fatalf("backend %+v", b)
	}
	if !keystore.IsAuthFailure(wrap(tpm2.ErrAuthFail)) || keystore.IsAuthFailure(wrap(tpm2.ErrAuthRequired)) {
		t.Error("IsAuthFailure")
	}
	for _, err := range []error{tpm2.ErrAuthRequired, tpm2.ErrNotTPM, tpm2.ErrNoAnswer, tpm2.ErrTPMUnavailable, tpm2.ErrKeyFileNotFound, tpm2.ErrWrongTPM} {
		if keystore.Hint(fmt.Errorf("x: %w", err)) == "" {
			t.Errorf("no hint for %v", err)
		}
	}
}

// TestRefusals: what every method refuses before a TPM is reached.
func TestRefusals(t *testing.T) {
	ctx := testCtx(t)
	st := Store{}
	dir := t.TempDir()
	notKey := filepath.Join(dir, "notes.pem")
	if err := os.WriteFile(notKey, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const noTPM = "?tpm=tcp:127.0.0.1:1"
	for ref, want := range map[string]error{
		"tpm2:file=/k.pem?auth-sorce=/p":            keystore.ErrInvalidRef,
		"tpm2:file=/k.pem?pin-value=1234":           keystore.ErrInlineSecret,
		"tpm2:dir=/keys":                            keystore.ErrInvalidRef,
		"tpm2:file=" + dir + "/missing.pem" + noTPM: keystore.ErrNotFound,
		"pkcs11:token=x":                            keystore.ErrInvalidRef,
	} {
		if _, err := st.Show(ctx, ref, nil); !errors.Is(err, want) {
			t.Errorf("Show(%s) = %v, want %v", ref, err, want)
		}
		if _, _, err := st.Public(ctx, ref, nil); !errors.Is(err, want) {
			t.Errorf("Public(%s) = %v, want %v", ref, err, want)
		}
		if _, err := st.Open(ctx, ref, nil); !errors.Is(err, want) {
			t.Errorf("Open(%s) = %v, want %v", ref, err, want)
		}
		if _, err := st.Delete(ctx, ref, func(*keystore.KeyInfo) error { return nil }, nil); !errors.Is(err, want) {
			t.Errorf("Delete(%s) = %v, want %v", ref, err, want)
		}
	}
	if _, err := st.Open(ctx, "tpm2:file=/k.pem?pin-value=1234", nil); err == nil || strings.Contains(err.Error(), "1234") {
		t.Errorf("pin-value: %v", err)
	}
	if _, err := st.List(ctx, "tpm2:file=/k.pem", nil); !errors.Is(err, keystore.ErrInvalidRef) {
		t.Errorf("List(key) = %v", err)
	}
	if _, err := st.Create(ctx, "tpm2:?tpm=/dev/tpm0", kem.DHKEMP256HKDFSHA256, nil); !errors.Is(err, keystore.ErrInvalidRef) {
		t.Errorf("Create(no key) = %v", err)
	}
	if _, err := st.Create(ctx, "tpm2:file="+dir+"/x.pem"+noTPM, kem.DHKEMX25519HKDFSHA256, nil); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("Create(X25519) = %v", err)
	}
	if _, err := st.Create(ctx, "tpm2:file="+notKey+noTPM, kem.DHKEMP256HKDFSHA256, nil); !errors.Is(err, keystore.ErrExists) {
		t.Errorf("Create(over a file) = %v", err)
	}
	if _, err := st.Create(ctx, "tpm2:file="+dir+"/k.pem"+noTPM, kem.DHKEMP256HKDFSHA256, nil); !errors.Is(err, keystore.ErrUnavailable) || !errors.Is(err, tpm2.ErrTPMUnavailable) {
		t.Errorf("Create(no TPM) = %v", err)
	}
	// A file that is not a TPM key file is never deleted.
	_, err := st.Delete(ctx, "tpm2:file="+notKey+noTPM, func(*keystore.KeyInfo) error { return nil }, nil)
	if !errors.Is(err, tpm2.ErrInvalidKeyFile) {
		t.Errorf("Delete(not a key file) = %v", err)
	}
	if _, err := os.Stat(notKey); err != nil {
		t.Fatalf("the file is gone: %v", err)
	}
	if _, err := st.Delete(ctx, "tpm2:handle=0x81000001"+noTPM, func(*keystore.KeyInfo) error { return nil }, nil); !errors.Is(err, keystore.ErrUnsupported) {
		t.Errorf("Delete(SRK) = %v", err)
	}
}

// TestVerbs: create, show, list, public, open, delete on swtpm, by key
// file and by persistent handle.
func TestVerbs(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	ctx := testCtx(t)
	st := Store{}
	dir := t.TempDir()
	tpmQ := "?tpm=" + sw.Transport()
	file := filepath.Join(dir, "gw.pem")

	// A key file, P-384.
	ci, err := st.Create(ctx, "tpm2:file="+file+tpmQ, kem.DHKEMP384HKDFSHA384, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ci.Ref != "tpm2:file="+file+tpmQ || !ci.Usable || ci.KEM != kem.DHKEMP384HKDFSHA384 || ci.Name != file ||
		!slices.Contains(ci.Attributes, "fixedTPM") || slices.Contains(ci.Attributes, "sign") || slices.Contains(ci.Attributes, "needs auth") {
		t.Fatalf("created %+v", ci)
	}
	if field(ci, "tpm") != sw.Transport() || field(ci, "key file") != file {
		t.Errorf("fields %+v", ci.Fields)
	}
	js, _ := json.Marshal(ci.Details)
	for _, want := range []string{`"transport":"` + sw.Transport() + `"`, `"file":"` + file + `"`, `"needs_auth":false`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("details %s lack %s", js, want)
		}
	}
	if _, err := st.Create(ctx, "tpm2:file="+file+tpmQ, kem.DHKEMP256HKDFSHA256, nil); !errors.Is(err, keystore.ErrExists) {
		t.Errorf("Create twice = %v", err)
	}
	si, err := st.Show(ctx, ci.Ref, nil)
	if err != nil || si.Ref != ci.Ref || !bytes.Equal(si.PublicKey, ci.PublicKey) || !si.Usable {
		t.Fatalf("Show = %+v, %v", si, err)
	}
	id, pub, err := st.Public(ctx, ci.Ref, nil)
	if err != nil || id != ci.KEM || !bytes.Equal(pub, ci.PublicKey) {
		t.Fatalf("Public = %v %x %v", id, pub, err)
	}
	checkECDH(t, ci.Ref, nil)

	// The same relative path gives the same, absolute, reference.
	wd, _ := os.Getwd()
	t.Chdir(dir)
	if si, err := st.Show(ctx, "tpm2:file=gw.pem"+tpmQ, nil); err != nil || si.Ref != ci.Ref {
		t.Errorf("Show(relative) = %+v, %v", si, err)
	}
	t.Chdir(wd)

	// Imported, in a file and at a handle.
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	both := filepath.Join(dir, "both.pem")
	ii, err := st.Import(ctx, "tpm2:file="+both+";handle=0x81000010"+tpmQ, &keystore.Material{KEM: kem.DHKEMP256HKDFSHA256, Secret: priv.Bytes()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ii.PublicKey, priv.PublicKey().Bytes()) || slices.Contains(ii.Attributes, "fixedTPM") {
		t.Fatalf("imported %+v", ii)
	}
	d := ii.Details.(*Details)
	if d.Handle != "0x81000010" || d.HandleRef != "tpm2:handle=0x81000010"+tpmQ || ii.Ref != "tpm2:file="+both+tpmQ || field(ii, "by handle") != d.HandleRef {
		t.Fatalf("imported %+v %+v", ii, d)
	}
	checkECDH(t, d.HandleRef, nil)
	if _, err := st.Create(ctx, "tpm2:handle=0x81000010"+tpmQ, kem.DHKEMP256HKDFSHA256, nil); !errors.Is(err, keystore.ErrExists) || !errors.Is(err, tpm2.ErrHandleInUse) {
		t.Errorf("Create(taken handle) = %v", err)
	}

	// Lists.
	l, err := st.List(ctx, "tpm2:"+tpmQ, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Keys) != 1 || l.Keys[0].Ref != d.HandleRef || !l.Keys[0].Usable || l.Keys[0].Name != "0x81000010" ||
		l.Title != "persistent handles of the TPM at "+sw.Transport() {
		t.Fatalf("list %+v %+v", l, l.Keys)
	}
	l, err = st.List(ctx, "tpm2:dir="+dir+tpmQ, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Keys) != 2 || l.Keys[0].Ref != "tpm2:file="+both+tpmQ || l.Keys[1].Ref != ci.Ref || l.Details.(*ListDetails).Dir != dir ||
		!strings.HasPrefix(l.Title, "TPM key files in "+dir) {
		t.Fatalf("dir list %+v", l)
	}

	// Delete: the handle and the file, after confirm.
	var seen *keystore.KeyInfo
	refuse := errors.New("no")
	if _, err := st.Delete(ctx, "tpm2:file="+both+";handle=0x81000010"+tpmQ, func(i *keystore.KeyInfo) error { seen = i; return refuse }, nil); err != refuse {
		t.Fatalf("Delete refused = %v", err)
	}
	if seen == nil || !bytes.Equal(seen.PublicKey, ii.PublicKey) {
		t.Fatalf("confirm saw %+v", seen)
	}
	del, err := st.Delete(ctx, "tpm2:file="+both+";handle=0x81000010"+tpmQ, func(*keystore.KeyInfo) error { return nil }, nil)
	if err != nil || len(del.Deleted) != 2 {
		t.Fatalf("Delete = %+v, %v", del, err)
	}
	if _, err := os.Stat(both); !errors.Is(err, os.ErrNotExist) {
		t.Error("key file not removed")
	}
	if _, err := st.Show(ctx, "tpm2:handle=0x81000010"+tpmQ, nil); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Show(evicted) = %v", err)
	}
	if _, err := st.Delete(ctx, ci.Ref, func(*keystore.KeyInfo) error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
}

// TestAuthRequired (issue 11, bug 3): a key with an auth value is shown
// usable only with a source, its reference says the source, and opening
// it without one fails before the TPM is asked.
func TestAuthRequired(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	ctx := testCtx(t)
	st := Store{}
	dir := t.TempDir()
	tpmQ := "?tpm=" + sw.Transport()
	authFile := filepath.Join(dir, "gw.auth")
	if err := os.WriteFile(authFile, []byte("tpm-auth-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "gw.pem")
	t.Chdir(dir)
	ci, err := st.Create(ctx, "tpm2:file=gw.pem"+tpmQ+"&auth-source=gw.auth", kem.DHKEMP256HKDFSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	withSrc := "tpm2:file=" + file + tpmQ + "&auth-source=file:" + authFile
	if ci.Ref != withSrc || !ci.Usable || !slices.Contains(ci.Attributes, "needs auth") {
		t.Fatalf("created %+v", ci)
	}
	bare := "tpm2:file=" + file + tpmQ
	si, err := st.Show(ctx, bare, nil)
	if err != nil {
		t.Fatal(err)
	}
	if si.Usable || !strings.Contains(si.Problem, "auth-source=file:PATH") || !strings.Contains(si.Problem, "env:NAME") || !si.Details.(*Details).NeedsAuth {
		t.Fatalf("shown without source: %+v", si)
	}
	if si, err := st.Show(ctx, withSrc, nil); err != nil || !si.Usable || si.Ref != withSrc {
		t.Fatalf("shown with source: %+v, %v", si, err)
	}
	l, err := st.List(ctx, "tpm2:dir="+dir+tpmQ, nil)
	if err != nil || len(l.Keys) != 1 || l.Keys[0].Usable || l.Keys[0].Problem == "" {
		t.Fatalf("listed: %+v, %v", l, err)
	}
	checkECDH(t, withSrc, nil)
	t.Setenv("TW_TEST_TPM_AUTH", "tpm-auth-value")
	checkECDH(t, bare+"&auth-source=env:TW_TEST_TPM_AUTH", nil)

	// The secret callback, asked once and only for this key.
	asked := 0
	o := &keystore.Options{Secret: func(what string) ([]byte, error) {
		asked++
		if !strings.Contains(what, file) {
			t.Errorf("asked for %q", what)
		}
		return []byte("tpm-auth-value"), nil
	}}
	checkECDH(t, bare, o)
	if asked != 1 {
		t.Fatalf("Secret asked %d times", asked)
	}

	// No source: refused before the TPM is asked (here there is none).
	sw.Stop()
	_, err = st.Open(ctx, bare, nil)
	if !errors.Is(err, keystore.ErrSecretRequired) || !errors.Is(err, tpm2.ErrAuthRequired) || errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Open without source = %v", err)
	}
	for _, want := range []string{"auth-source=file:PATH", "env:NAME"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %s", err, want)
		}
	}
	// The store names no flag of one command: the plugin and the
	// gateway have none (the CLI's hint line names its flags).
	if strings.Contains(err.Error(), "--pin") {
		t.Errorf("%q names a CLI flag", err)
	}
	if strings.Contains(err.Error(), "tpm-auth-value") {
		t.Fatal("the error holds the auth value")
	}
	sw.Start()
}
