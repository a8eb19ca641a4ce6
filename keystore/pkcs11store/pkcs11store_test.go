package pkcs11store_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudflare/circl/dh/x448"
	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/pkcs11store"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

var st keystore.Store = pkcs11store.Store{}

func wantErr(t *testing.T, err error, sentinels []error, texts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v", sentinels)
	}
	for _, s := range sentinels {
		if !errors.Is(err, s) {
			t.Errorf("error %q does not wrap %v", err, s)
		}
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

// every runs each verb of the store on ref and returns their errors.
func every(ref string, o *keystore.Options) map[string]error {
	ctx := context.Background()
	out := map[string]error{}
	_, out["create"] = st.Create(ctx, ref, kem.DHKEMP256HKDFSHA256, o)
	_, out["import"] = st.Import(ctx, ref, &keystore.Material{KEM: kem.DHKEMX25519HKDFSHA256, Secret: make([]byte, 32)}, o)
	_, out["list"] = st.List(ctx, ref, o)
	_, out["show"] = st.Show(ctx, ref, o)
	_, out["delete"] = st.Delete(ctx, ref, func(*keystore.KeyInfo) error { return nil }, o)
	_, _, out["public"] = st.Public(ctx, ref, o)
	k, err := st.Open(ctx, ref, o)
	if err == nil {
		k.Close()
	}
	out["open"] = err
	return out
}

// TestRegistered: the store serves pkcs11: references.
func TestRegistered(t *testing.T) {
	b, err := keystore.Lookup("pkcs11:token=gw;id=%01")
	if err != nil {
		t.Fatal(err)
	}
	if b.Scheme != "pkcs11" || b.SecretAttr != "pin-source" || !b.SecretRequired || b.Summary != "a key on a PKCS#11 token (RFC 7512 URI)" {
		t.Errorf("backend %+v", b)
	}
	if _, ok := b.Store.(pkcs11store.Store); !ok {
		t.Errorf("store %T", b.Store)
	}
	if h := keystore.Hint(pkcs11.ErrModuleNotFound); !strings.Contains(h, "module-path=") {
		t.Errorf("hint for ErrModuleNotFound: %q", h)
	}
	if !keystore.IsAuthFailure(pkcs11.ErrPINIncorrect) || keystore.IsAuthFailure(pkcs11.ErrKeyNotFound) {
		t.Error("AuthFailure")
	}
}

// TestBadRefs: every method refuses a malformed reference, an attribute
// RFC 7512 does not define, a pin-value, and (but list) a URI that names
// no key, before it touches a device.
func TestBadRefs(t *testing.T) {
	for ref, want := range map[string]string{
		"pkcs11:tokn=nosuchtoken;id=%01":                      `unknown path attribute "tokn"`,
		"pkcs11:token=gw;id=%01?pin-sorce=file:/etc/gw.pin":   `unknown query attribute "pin-sorce"`,
		"pkcs11:token=gw;id=%zz":                              "percent-encoding",
		"pkcs11:token=gw;id=%01?module-name=softhsm2":         "module-name",
		"pkcs11:token=gw;id=%01;id=%02":                       "given twice",
		"pkcs11:token=gw;id=%01?pin-source=https://x.invalid": "not supported",
	} {
		for verb, err := range every(ref, nil) {
			sentinel := keystore.ErrInvalidRef
			if strings.Contains(ref, "https") {
				sentinel = keystore.ErrSecretRequired // an unusable pin-source
			}
			if !errors.Is(err, sentinel) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s %s: %v; want %v saying %q", verb, ref, err, sentinel, want)
			}
		}
	}
	for verb, err := range every("pkcs11:token=gw;id=%01?pin-value=s3cret-pin", nil) {
		if !errors.Is(err, keystore.ErrInlineSecret) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s with a pin-value: %v", verb, err)
		}
	}
	secretCalled := false
	o := &keystore.Options{Secret: func(string) ([]byte, error) { secretCalled = true; return []byte("1234"), nil }}
	for verb, err := range every("pkcs11:token=gw", o) {
		if verb == "list" {
			continue
		}
		if !errors.Is(err, keystore.ErrInvalidRef) || !errors.Is(err, pkcs11.ErrInvalidURI) || !strings.Contains(err.Error(), "name") || !strings.Contains(err.Error(), "key") {
			t.Errorf("%s without id= or object=: %v", verb, err)
		}
	}
	if secretCalled {
		t.Error("the Secret callback was called for a reference that was refused")
	}
}

// TestVerbs runs create, import, list, show, public, open and delete on a
// SoftHSM2 token.
func TestVerbs(t *testing.T) {
	sh := testenv.SoftHSM(t)
	ctx := context.Background()

	ref := sh.URI("id=%01", "object=gw")
	created, err := st.Create(ctx, ref, kem.DHKEMP256HKDFSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantRef := "pkcs11:token=" + sh.TokenLabel + ";serial=" + sh.Serial + ";id=%01;object=gw?module-path=" + sh.ModulePath + "&pin-source=file:" + sh.PINFile
	if created.Ref != wantRef {
		t.Errorf("Ref = %s\nwant  %s", created.Ref, wantRef)
	}
	if created.Backend != "pkcs11" || created.KEM != kem.DHKEMP256HKDFSHA256 || len(created.PublicKey) != 65 || !created.Usable || created.Problem != "" {
		t.Errorf("created %+v", created)
	}
	if created.Name != "id 01 (gw)" {
		t.Errorf("Name = %q", created.Name)
	}
	if want := []string{"sensitive", "derive", "token", "private", "local"}; !slices.Equal(created.Attributes, want) {
		t.Errorf("Attributes = %v, want %v", created.Attributes, want)
	}
	fields := map[string]string{}
	for _, f := range created.Fields {
		fields[f.Name] = f.Value
	}
	for name, want := range map[string]string{
		"token": sh.TokenLabel + " (serial " + sh.Serial + ")", "module": sh.ModulePath, "id": "01", "label": "gw",
		"key type": "CKK_EC (P-256)", "attributes": "sensitive=true extractable=false derive=true token=true private=true",
		"": "always-sensitive=true never-extractable=true local=true",
	} {
		if fields[name] != want {
			t.Errorf("field %q = %q, want %q", name, fields[name], want)
		}
	}
	j, err := json.Marshal(created.Details)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	json.Unmarshal(j, &d)
	attrs, _ := d["attributes"].(map[string]any)
	if d["token"] != sh.TokenLabel || d["serial"] != sh.Serial || d["module_path"] != sh.ModulePath || d["id"] != "01" ||
		d["label"] != "gw" || d["key_type"] != "CKK_EC" || d["curve"] != "P-256" || attrs["sensitive"] != true || attrs["extractable"] != false ||
		attrs["never_extractable"] != true || attrs["local"] != true {
		t.Errorf("Details JSON: %s", j)
	}

	// An existing id or label is ErrExists; nothing is made.
	_, err = st.Create(ctx, sh.URI("id=%01", "object=other"), kem.DHKEMX25519HKDFSHA256, nil)
	wantErr(t, err, []error{keystore.ErrExists, pkcs11.ErrKeyExists}, "id=%01")
	_, err = st.Create(ctx, sh.URI("id=%09", "object=gw"), kem.DHKEMX25519HKDFSHA256, nil)
	wantErr(t, err, []error{keystore.ErrExists, pkcs11store.ErrLabelExists}, "object=gw")
	_, err = st.Create(ctx, sh.URI("id=%09"), kem.MLKEM768, nil)
	wantErr(t, err, []error{keystore.ErrUnsupported, pkcs11.ErrUnsupportedKeyType})

	// Import: the token's key is the software key.
	soft448 := make([]byte, x448.Size)
	rand.Read(soft448)
	var sk, pk x448.Key
	copy(sk[:], soft448)
	x448.KeyGen(&pk, &sk)
	imp448, err := st.Import(ctx, sh.URI("id=%02", "object=imported-x448"), &keystore.Material{KEM: kem.DHKEMX448HKDFSHA512, Secret: soft448}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if imp448.KEM != kem.DHKEMX448HKDFSHA512 || !bytes.Equal(imp448.PublicKey, pk[:]) || slices.Contains(imp448.Attributes, "local") {
		t.Errorf("imported X448 key: %+v", imp448)
	}
	soft256, _ := ecdh.P256().GenerateKey(rand.Reader)
	imp256, err := st.Import(ctx, sh.URI("id=%03"), &keystore.Material{KEM: kem.DHKEMP256HKDFSHA256, Secret: soft256.Bytes()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(imp256.PublicKey, soft256.PublicKey().Bytes()) || imp256.Name != "id 03" {
		t.Errorf("imported P-256 key: %+v", imp256)
	}

	// List: every key, sorted by id; or those id=/object= select.
	l, err := st.List(ctx, sh.URI(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range l.Keys {
		names = append(names, k.Name)
	}
	if !slices.Equal(names, []string{"id 01 (gw)", "id 02 (imported-x448)", "id 03"}) {
		t.Errorf("listed %v", names)
	}
	if l.Backend != "pkcs11" || !strings.HasPrefix(l.Title, `token "`+sh.TokenLabel+`" (serial `+sh.Serial+", SoftHSM") || !strings.HasSuffix(l.Title, " via "+sh.ModulePath) {
		t.Errorf("Title = %q", l.Title)
	}
	if td, ok := l.Details.(*pkcs11store.TokenDetails); !ok || td.Label != sh.TokenLabel || td.Serial != sh.Serial || td.ModulePath != sh.ModulePath || td.Model == "" || td.Manufacturer == "" {
		t.Errorf("Details = %#v", l.Details)
	}
	if l.Keys[0].Ref != created.Ref {
		t.Errorf("listed Ref %s, created %s", l.Keys[0].Ref, created.Ref)
	}
	l, err = st.List(ctx, sh.URI("object=imported-x448"), nil)
	if err != nil || len(l.Keys) != 1 || l.Keys[0].Name != "id 02 (imported-x448)" {
		t.Errorf("filtered list: %v %+v", err, l)
	}

	// Show: one key; none; several (two labels can only be made past the
	// store).
	shown, err := st.Show(ctx, sh.URI("object=gw"), nil)
	if err != nil || shown.Ref != created.Ref || !bytes.Equal(shown.PublicKey, created.PublicKey) {
		t.Errorf("show: %v %+v", err, shown)
	}
	_, err = st.Show(ctx, sh.URI("id=%77"), nil)
	wantErr(t, err, []error{keystore.ErrNotFound, pkcs11.ErrKeyNotFound}, "id=%77")
	tok, err := pkcs11.OpenToken(ctx, sh.URI())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tok.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: []byte{4}, Label: "gw"})
	tok.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Show(ctx, sh.URI("object=gw"), nil)
	wantErr(t, err, []error{pkcs11.ErrKeyAmbiguous}, "id 01", "id 04")

	// Public and Open agree with what Create said; the key does ECDH on
	// the token.
	id, pub, err := st.Public(ctx, sh.URIWithoutPIN("id=%01"), nil)
	if err != nil || id != created.KEM || !bytes.Equal(pub, created.PublicKey) {
		t.Errorf("public: %v %v %x", err, id, pub)
	}
	k, err := st.Open(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	x, ok := k.(kem.Exchanger)
	if !ok {
		t.Fatalf("opened key %T is no kem.Exchanger", k)
	}
	if _, ok := k.(ecdh.KeyExchanger); !ok {
		t.Errorf("opened P-256 key %T is no ecdh.KeyExchanger", k)
	}
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	got, err := x.ECDHContext(ctx, peer.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	tokPub, _ := ecdh.P256().NewPublicKey(created.PublicKey)
	want, _ := peer.ECDH(tokPub)
	if !bytes.Equal(got, want) {
		t.Error("the token's ECDH differs from the peer's")
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}

	// Delete: only after confirm, exactly the key confirm saw (by its own
	// id and label: object=gw alone now matches two).
	_, err = st.Delete(ctx, sh.URI("object=gw"), func(*keystore.KeyInfo) error { t.Fatal("confirm called for an ambiguous URI"); return nil }, nil)
	wantErr(t, err, []error{pkcs11.ErrKeyAmbiguous})
	refuse := errors.New("not confirmed")
	_, err = st.Delete(ctx, sh.URI("id=%01"), func(i *keystore.KeyInfo) error {
		if i.Ref != created.Ref {
			t.Errorf("confirm saw %s", i.Ref)
		}
		return refuse
	}, nil)
	if !errors.Is(err, refuse) {
		t.Fatalf("refused delete: %v", err)
	}
	if _, err := st.Show(ctx, sh.URI("id=%01"), nil); err != nil {
		t.Fatalf("the key is gone after a refused delete: %v", err)
	}
	del, err := st.Delete(ctx, sh.URI("id=%01"), func(*keystore.KeyInfo) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if del.Key.Ref != created.Ref || len(del.Deleted) != 1 || !strings.Contains(del.Deleted[0], created.Ref) {
		t.Errorf("deletion %+v", del)
	}
	_, err = st.Show(ctx, sh.URI("id=%01"), nil)
	wantErr(t, err, []error{keystore.ErrNotFound})
	if _, _, err := st.Public(ctx, sh.URIWithoutPIN("id=%01"), nil); err == nil {
		t.Error("the public key object outlived its private key")
	}
	if _, err := st.Show(ctx, sh.URI("id=%04"), nil); err != nil {
		t.Errorf("the other key labelled gw: %v", err)
	}
}

// TestPIN: the PIN comes from the URI's pin-source, else from the Secret
// callback, which is called once, after the token is found, and never
// for a token that is not there; without either the error is
// ErrSecretRequired. Errors never show the PIN.
func TestPIN(t *testing.T) {
	sh := testenv.SoftHSM(t)
	ctx := context.Background()
	if _, err := st.Create(ctx, sh.URI("id=%01", "object=gw"), kem.DHKEMP256HKDFSHA256, nil); err != nil {
		t.Fatal(err)
	}
	var asked []string
	give := func(pin string) *keystore.Options {
		return &keystore.Options{Secret: func(what string) ([]byte, error) {
			asked = append(asked, what)
			return []byte(pin), nil
		}}
	}
	noPIN := sh.URIWithoutPIN("id=%01")

	for verb, err := range every(strings.Replace(noPIN, "token="+sh.TokenLabel, "token=no-such-token", 1), give(sh.PIN)) {
		t.Run("missing token "+verb, func(t *testing.T) {
			wantErr(t, err, []error{keystore.ErrNotFound, pkcs11.ErrTokenNotFound}, "no-such-token")
		})
	}
	if len(asked) != 0 {
		t.Fatalf("asked for a PIN of a token that is not there: %q", asked)
	}

	for verb, err := range map[string]error{
		"show": func() error { _, err := st.Show(ctx, noPIN, nil); return err }(),
		"list": func() error { _, err := st.List(ctx, noPIN, nil); return err }(),
		"open": func() error { _, err := st.Open(ctx, noPIN, nil); return err }(),
	} {
		t.Run("no PIN "+verb, func(t *testing.T) {
			wantErr(t, err, []error{keystore.ErrSecretRequired, pkcs11.ErrPINSource})
		})
	}

	i, err := st.Show(ctx, noPIN, give(sh.PIN))
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0] != "PIN for "+noPIN {
		t.Errorf("asked %q", asked)
	}
	if strings.Contains(i.Ref, "pin-") {
		t.Errorf("Ref %s names a PIN source it was not given", i.Ref)
	}

	// A source in the URI wins; the callback is not called.
	asked = nil
	if _, err := st.Show(ctx, sh.URI("id=%01"), give("bogus")); err != nil || len(asked) != 0 {
		t.Errorf("with a pin-source: %v, asked %q", err, asked)
	}
	t.Setenv("TWOWAY_TEST_PIN", sh.PIN)
	i, err = st.Show(ctx, noPIN+"&pin-source=env:TWOWAY_TEST_PIN", nil)
	if err != nil || !strings.HasSuffix(i.Ref, "&pin-source=env:TWOWAY_TEST_PIN") {
		t.Errorf("env: source: %v %+v", err, i)
	}
	// A relative pin-source is printed absolute.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, sh.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	i, err = st.Show(ctx, noPIN+"&pin-source="+rel, nil)
	if err != nil || !strings.HasSuffix(i.Ref, "&pin-source=file:"+sh.PINFile) {
		t.Errorf("relative pin-source %s: %v %+v", rel, err, i)
	}

	// A wrong PIN is an authentication failure, without the PIN.
	wrong := "wrong-" + sh.PIN
	_, err = st.Show(ctx, noPIN, give(wrong))
	wantErr(t, err, []error{keystore.ErrAuth, pkcs11.ErrPINIncorrect})
	if !keystore.IsAuthFailure(err) || strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), sh.PIN) {
		t.Errorf("wrong PIN: %v", err)
	}
	failing := &keystore.Options{Secret: func(string) ([]byte, error) {
		return nil, errors.New("no terminal")
	}}
	_, err = st.Show(ctx, noPIN, failing)
	wantErr(t, err, []error{keystore.ErrSecretRequired, pkcs11.ErrPINSource}, "no terminal")
}

// TestPublicLeastPrivilege: Public reads the public key object without
// logging in (no PIN asked); only for a key whose public object is
// private (visible after login) does it log in, and then it needs the
// PIN.
func TestPublicLeastPrivilege(t *testing.T) {
	sh := testenv.SoftHSM(t)
	ctx := context.Background()
	made, err := st.Create(ctx, sh.URI("id=%01"), kem.DHKEMX25519HKDFSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	asked := 0
	o := &keystore.Options{Secret: func(string) ([]byte, error) { asked++; return []byte(sh.PIN), nil }}
	id, pub, err := st.Public(ctx, sh.URIWithoutPIN("id=%01"), o)
	if err != nil || id != made.KEM || !bytes.Equal(pub, made.PublicKey) || asked != 0 {
		t.Fatalf("public: %v %v %x, asked %d times", err, id, pub, asked)
	}

	makeHiddenKey(t, sh, []byte{2})
	hidden, err := st.Show(ctx, sh.URI("id=%02"), nil)
	if err != nil || !hidden.Usable {
		t.Fatalf("show: %v %+v", err, hidden)
	}
	_, _, err = st.Public(ctx, sh.URIWithoutPIN("id=%02"), nil)
	wantErr(t, err, []error{keystore.ErrSecretRequired})
	id, pub, err = st.Public(ctx, sh.URIWithoutPIN("id=%02"), o)
	if err != nil || id != kem.DHKEMP256HKDFSHA256 || !bytes.Equal(pub, hidden.PublicKey) || asked != 1 {
		t.Fatalf("public after login: %v %v %x, asked %d times", err, id, pub, asked)
	}
}

// makeHiddenKey makes a P-256 key pair with CKA_ID id whose public key
// object is private, through the module directly.
func makeHiddenKey(t *testing.T, sh *testenv.SoftHSMToken, id []byte) {
	t.Helper()
	c := p11.New(sh.ModulePath)
	if c == nil {
		t.Fatal("cannot load the module")
	}
	if err := c.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer c.Finalize()
	slots, err := c.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, slot := range slots {
		ti, err := c.GetTokenInfo(slot)
		if err != nil || strings.TrimRight(ti.Label, " ") != sh.TokenLabel {
			continue
		}
		s, err := c.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseSession(s)
		if err := c.Login(s, p11.CKU_USER, sh.PIN); err != nil {
			t.Fatal(err)
		}
		p256 := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
		_, _, err = c.GenerateKeyPair(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_EC_KEY_PAIR_GEN, nil)},
			[]*p11.Attribute{
				p11.NewAttribute(p11.CKA_TOKEN, true), p11.NewAttribute(p11.CKA_PRIVATE, true),
				p11.NewAttribute(p11.CKA_EC_PARAMS, p256), p11.NewAttribute(p11.CKA_ID, id),
			},
			[]*p11.Attribute{
				p11.NewAttribute(p11.CKA_TOKEN, true), p11.NewAttribute(p11.CKA_PRIVATE, true),
				p11.NewAttribute(p11.CKA_SENSITIVE, true), p11.NewAttribute(p11.CKA_DERIVE, true), p11.NewAttribute(p11.CKA_ID, id),
			})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("token %s not found", sh.TokenLabel)
}

// TestModulePath: references and details name the module as the caller
// gave it (a symlink stays a symlink); without module-path the default is
// p11-kit's proxy, never SoftHSM2.
func TestModulePath(t *testing.T) {
	sh := testenv.SoftHSM(t)
	ctx := context.Background()
	link := filepath.Join(t.TempDir(), "vendor-module.so")
	if err := os.Symlink(sh.ModulePath, link); err != nil {
		t.Fatal(err)
	}
	ref := strings.Replace(sh.URI("id=%01"), "module-path="+sh.ModulePath, "module-path="+link, 1)
	i, err := st.Create(ctx, ref, kem.DHKEMP384HKDFSHA384, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(i.Ref, "module-path="+link+"&") || i.Details.(*pkcs11store.Details).ModulePath != link {
		t.Errorf("Ref %s, details %+v: want the module as given, %s", i.Ref, i.Details, link)
	}
	for _, f := range i.Fields {
		if f.Name == "module" && f.Value != link {
			t.Errorf("module field %q, want %q", f.Value, link)
		}
	}
	l, err := st.List(ctx, ref, nil)
	if err != nil || !strings.HasSuffix(l.Title, " via "+link) || l.Keys[0].Ref != i.Ref {
		t.Errorf("list: %v %+v", err, l)
	}

	if _, err := pkcs11.DefaultModulePath(); err == nil {
		t.Skip("p11-kit's proxy module is installed: the default is usable")
	}
	noModule := "pkcs11:token=" + sh.TokenLabel + ";id=%01?pin-source=file:" + sh.PINFile
	for verb, err := range every(noModule, nil) {
		t.Run("no module-path "+verb, func(t *testing.T) {
			wantErr(t, err, []error{keystore.ErrUnavailable, pkcs11.ErrModuleNotFound}, "module-path=")
		})
	}
}
