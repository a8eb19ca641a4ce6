package pkcs11_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

func wantErr(t *testing.T, err error, target error, msgParts ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one wrapping %v", err, target)
	}
	for _, p := range msgParts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not mention %q", err.Error(), p)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	sh := testenv.SoftHSM(t)
	ctx := context.Background()
	secrets := []string{sh.PIN, sh.SOPIN}
	try := func(uri string, opts ...pkcs11.Option) error {
		tok, err := pkcs11.OpenToken(ctx, uri, opts...)
		if err == nil {
			tok.Close()
		}
		assertNoSecret(t, err, secrets...)
		return err
	}

	t.Run("wrong PIN", func(t *testing.T) {
		wrong := "wrong-" + sh.PIN
		err := try(sh.URIWithoutPIN(), pkcs11.WithPIN(wrong))
		wantErr(t, err, pkcs11.ErrPINIncorrect, sh.TokenLabel, "CKR_PIN_INCORRECT")
		assertNoSecret(t, err, wrong)
		err = try(sh.URIWithoutPIN() + "&pin-value=" + wrong)
		wantErr(t, err, pkcs11.ErrPINIncorrect)
		assertNoSecret(t, err, wrong)
	})
	t.Run("missing token", func(t *testing.T) {
		err := try(strings.Replace(sh.URI(), "token="+sh.TokenLabel, "token=no-such-token", 1))
		wantErr(t, err, pkcs11.ErrTokenNotFound, "no-such-token", sh.TokenLabel)
		err = try(sh.URI("serial=0000"))
		wantErr(t, err, pkcs11.ErrTokenNotFound, "serial=0000")
		slot := "slot-id=4242"
		err = try(sh.URI(slot))
		wantErr(t, err, pkcs11.ErrTokenNotFound, slot)
	})
	t.Run("select by serial and model", func(t *testing.T) {
		uri := "pkcs11:serial=" + sh.Serial + ";model=SoftHSM%20v2;manufacturer=SoftHSM%20project?module-path=" + sh.ModulePath + "&pin-source=" + sh.PINFile
		if err := try(uri); err != nil {
			t.Fatal(err)
		}
		tok, err := pkcs11.OpenToken(ctx, sh.URI())
		if err != nil {
			t.Fatal(err)
		}
		info, err := pkcs11.RawCtx(tok).GetInfo()
		tok.Close()
		if err != nil {
			t.Fatal(err)
		}
		v := fmt.Sprintf("library-version=%d.%d", info.LibraryVersion.Major, info.LibraryVersion.Minor)
		if err := try(sh.URI(v)); err != nil {
			t.Errorf("%s: %v", v, err)
		}
		wantErr(t, try(sh.URI("library-version=255.255")), pkcs11.ErrTokenNotFound, "version")
	})
	t.Run("module", func(t *testing.T) {
		err := try(sh.URI(), pkcs11.WithModulePath("/nonexistent/libnothing.so"))
		wantErr(t, err, pkcs11.ErrModuleNotFound, "/nonexistent/libnothing.so")
		notLib := filepath.Join(t.TempDir(), "lib.so")
		os.WriteFile(notLib, []byte("not a library"), 0o600)
		err = try(sh.URI(), pkcs11.WithModulePath(notLib))
		wantErr(t, err, pkcs11.ErrModuleLoad)
	})
	t.Run("PIN sources", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "missing.pin")
		wantErr(t, try(sh.URIWithoutPIN()+"&pin-source=file:"+missing), pkcs11.ErrPINSource, missing)
		empty := filepath.Join(t.TempDir(), "empty.pin")
		os.WriteFile(empty, []byte("\n"), 0o600)
		wantErr(t, try(sh.URIWithoutPIN()+"&pin-source="+empty), pkcs11.ErrPINSource, "empty")
		wantErr(t, try(sh.URIWithoutPIN()), pkcs11.ErrPINSource, "requires login")
		wantErr(t, try(sh.URIWithoutPIN(), pkcs11.WithPINEnv("TWOWAY_TEST_UNSET_PIN")), pkcs11.ErrPINSource, "TWOWAY_TEST_UNSET_PIN")
		wantErr(t, try(sh.URIWithoutPIN()+"&pin-source=https://example.invalid/pin"), pkcs11.ErrPINSource, "https")
		wantErr(t, try(sh.URIWithoutPIN()+"&pin-source=env:TWOWAY_TEST_UNSET_PIN"), pkcs11.ErrPINSource, "TWOWAY_TEST_UNSET_PIN")
		wantErr(t, try(sh.URIWithoutPIN()+"&pin-source=env:"), pkcs11.ErrPINSource, "no variable")

		t.Setenv("TWOWAY_TEST_PIN", sh.PIN)
		for name, err := range map[string]error{
			"env":              try(sh.URIWithoutPIN(), pkcs11.WithPINEnv("TWOWAY_TEST_PIN")),
			"file option":      try(sh.URIWithoutPIN(), pkcs11.WithPINFile(sh.PINFile)),
			"plain path":       try(sh.URIWithoutPIN() + "&pin-source=" + sh.PINFile),
			"file:// URI":      try(sh.URIWithoutPIN() + "&pin-source=file://" + sh.PINFile),
			"env: source":      try(sh.URIWithoutPIN() + "&pin-source=env:TWOWAY_TEST_PIN"),
			"pin-value":        try(sh.URIWithoutPIN() + "&pin-value=" + sh.PIN),
			"option over URI":  try(sh.URIWithoutPIN()+"&pin-value=bogus", pkcs11.WithPIN(sh.PIN)),
			"module in option": try("pkcs11:token="+sh.TokenLabel, pkcs11.WithModulePath(sh.ModulePath), pkcs11.WithPIN(sh.PIN)),
		} {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
	t.Run("PIN function", func(t *testing.T) {
		calls := 0
		ask := pkcs11.WithPINFunc(func(ti pkcs11.TokenInfo) ([]byte, error) {
			calls++
			if ti.Label != sh.TokenLabel {
				t.Errorf("asked for the PIN of %q", ti.Label)
			}
			return []byte(sh.PIN), nil
		})
		// Not asked for a token that is not there, nor when a source is given.
		err := try(strings.Replace(sh.URIWithoutPIN(), "token="+sh.TokenLabel, "token=no-such-token", 1), ask)
		wantErr(t, err, pkcs11.ErrTokenNotFound)
		if err := try(sh.URI(), ask); err != nil || calls != 0 {
			t.Fatalf("with a pin-source: %v, %d calls", err, calls)
		}
		if err := try(sh.URIWithoutPIN(), ask); err != nil || calls != 1 {
			t.Fatalf("without a source: %v, %d calls", err, calls)
		}
		failing := pkcs11.WithPINFunc(func(pkcs11.TokenInfo) ([]byte, error) { return nil, errors.New("no terminal") })
		wantErr(t, try(sh.URIWithoutPIN(), failing), pkcs11.ErrPINSource, "no terminal")
		empty := pkcs11.WithPINFunc(func(pkcs11.TokenInfo) ([]byte, error) { return nil, nil })
		wantErr(t, try(sh.URIWithoutPIN(), empty), pkcs11.ErrPINSource, "empty")
	})
	t.Run("unknown attributes", func(t *testing.T) {
		// With one token present, a typo must not select it.
		wantErr(t, try(strings.Replace(sh.URI(), "token=", "tokn=", 1)), pkcs11.ErrInvalidURI, `"tokn"`)
		wantErr(t, try(strings.Replace(sh.URI(), "pin-source=", "pin-sorce=", 1)), pkcs11.ErrInvalidURI, `"pin-sorce"`)
		if err := try(sh.URI("x-vendor=1")); err != nil {
			t.Errorf("vendor attribute: %v", err)
		}
	})
	t.Run("malformed URI", func(t *testing.T) {
		wantErr(t, try("pkcs12:token=x"), pkcs11.ErrInvalidURI)
		err := try("pkcs11:token=x?pin-value=%zz" + sh.PIN)
		wantErr(t, err, pkcs11.ErrInvalidURI)
		if _, err := pkcs11.OpenKey(ctx, sh.URI()); !errors.Is(err, pkcs11.ErrInvalidURI) {
			t.Fatalf("OpenKey without id/object: %v", err)
		}
	})
}

func TestAmbiguousToken(t *testing.T) {
	sh := testenv.SoftHSM(t)
	sh2 := sh.AddToken(t)
	ctx := context.Background()
	_, err := pkcs11.OpenToken(ctx, "pkcs11:model=SoftHSM%20v2?module-path="+sh.ModulePath, pkcs11.WithPIN(sh.PIN))
	wantErr(t, err, pkcs11.ErrTokenAmbiguous, sh.TokenLabel, sh2.TokenLabel)
	// Both tokens open at once, in one module.
	t1, err := pkcs11.OpenToken(ctx, sh.URI())
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Close()
	t2, err := pkcs11.OpenToken(ctx, sh2.URI())
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Close()
	if t1.Info().ModulePath != t2.Info().ModulePath || t1.Info().Serial == t2.Info().Serial {
		t.Fatalf("tokens %+v %+v", t1.Info(), t2.Info())
	}
}

func TestRefusedKeys(t *testing.T) {
	sh, tok := openToken(t)
	ctx := context.Background()
	c, s := rawSession(t, sh, tok)
	p256 := []byte{0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}
	ed25519 := []byte{0x06, 0x03, 0x2b, 0x65, 0x70}
	secp256k1 := []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}

	genPair := func(mech uint, keyType uint, id byte, pubExtra, privExtra []*p11.Attribute) error {
		pub := append([]*p11.Attribute{
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_ID, []byte{id}),
		}, pubExtra...)
		priv := append([]*p11.Attribute{
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_SENSITIVE, true),
			p11.NewAttribute(p11.CKA_ID, []byte{id}),
		}, privExtra...)
		_, _, err := c.GenerateKeyPair(s, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, pub, priv)
		return err
	}
	// An EC key without CKA_DERIVE.
	if err := genPair(p11.CKM_EC_KEY_PAIR_GEN, p11.CKK_EC, 0x71,
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, p256)},
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_DERIVE, false), p11.NewAttribute(p11.CKA_SIGN, true)}); err != nil {
		t.Fatal(err)
	}
	_, err := tok.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0x71}})
	wantErr(t, err, pkcs11.ErrKeyNotDerivable, "CKA_DERIVE")

	// An RSA key.
	if err := genPair(p11.CKM_RSA_PKCS_KEY_PAIR_GEN, p11.CKK_RSA, 0x72,
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_MODULUS_BITS, 1024), p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1})},
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_DECRYPT, true)}); err != nil {
		t.Fatal(err)
	}
	_, err = tok.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0x72}})
	wantErr(t, err, pkcs11.ErrUnsupportedKeyType, "CKA_KEY_TYPE", "CKK_RSA")

	// An Ed25519 signing key and a secp256k1 key.
	if err := genPair(0x1055, 0x40, 0x73,
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, ed25519)},
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_DERIVE, true)}); err != nil {
		t.Fatal(err)
	}
	_, err = tok.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0x73}})
	wantErr(t, err, pkcs11.ErrUnsupportedKeyType, "CKA_EC_PARAMS", "which no HPKE KEM uses") // SoftHSM stores it as the name "edwards25519"
	if err := genPair(p11.CKM_EC_KEY_PAIR_GEN, p11.CKK_EC, 0x74,
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_EC_PARAMS, secp256k1)},
		[]*p11.Attribute{p11.NewAttribute(p11.CKA_DERIVE, true)}); err == nil {
		_, err = tok.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0x74}})
		wantErr(t, err, pkcs11.ErrUnsupportedKeyType, "1.3.132.0.10")
	}

	// An extractable key: fine by default, refused in strict mode.
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := c.CreateObject(s, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
		p11.NewAttribute(p11.CKA_DERIVE, true),
		p11.NewAttribute(p11.CKA_ID, []byte{0x75}),
		p11.NewAttribute(p11.CKA_EC_PARAMS, p256),
		p11.NewAttribute(p11.CKA_VALUE, priv.Bytes()),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateObject(s, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_ID, []byte{0x75}),
		p11.NewAttribute(p11.CKA_EC_PARAMS, p256),
		p11.NewAttribute(p11.CKA_EC_POINT, derOctetString(priv.PublicKey().Bytes())),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0x75}}); err != nil {
		t.Fatalf("extractable key, non-strict: %v", err)
	}
	strict, err := pkcs11.OpenToken(ctx, sh.URI(), pkcs11.WithStrict(true))
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	_, err = strict.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0x75}})
	wantErr(t, err, pkcs11.ErrKeyExtractable, "CKA_EXTRACTABLE")

	// A private key without any public key.
	priv2, _ := ecdh.P256().GenerateKey(rand.Reader)
	if _, err := c.CreateObject(s, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_DERIVE, true),
		p11.NewAttribute(p11.CKA_ID, []byte{0x76}),
		p11.NewAttribute(p11.CKA_EC_PARAMS, p256),
		p11.NewAttribute(p11.CKA_VALUE, priv2.Bytes()),
	}); err != nil {
		t.Fatal(err)
	}
	_, err = tok.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0x76}})
	wantErr(t, err, pkcs11.ErrPublicKeyNotFound)

	// A missing key, and ListKeys explains each refusal.
	_, err = tok.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0xee}, Label: "nope"})
	wantErr(t, err, pkcs11.ErrKeyNotFound, "id=%EE;object=nope", sh.TokenLabel)
	_, err = pkcs11.OpenKey(ctx, sh.KeyURI([]byte{0xee}, ""))
	wantErr(t, err, pkcs11.ErrKeyNotFound)
	list, err := tok.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ki := range list {
		t.Logf("%s %s unusable: %v", ki.URI, ki.KeyType, ki.Unusable)
		if (ki.Unusable == nil) != (ki.ID[0] == 0x75) {
			t.Errorf("%s: Unusable = %v", ki.URI, ki.Unusable)
		}
	}
}

func TestBadPeerPoints(t *testing.T) {
	_, tok := openToken(t)
	ctx := context.Background()
	keys := map[string]*pkcs11.Key{}
	for i, c := range dhCurves {
		k, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: []byte{0x50, byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		keys[c.name] = k
	}
	good256, _ := ecdh.P256().GenerateKey(rand.Reader)
	g := good256.PublicKey().Bytes()
	offCurve := append([]byte(nil), g...)
	offCurve[64] ^= 1
	compressed := append([]byte{0x02 | g[64]&1}, g[1:33]...)
	good384, _ := ecdh.P384().GenerateKey(rand.Reader)

	// Low-order X25519 u-coordinates (RFC 7748 section 6.1 notes; the
	// values libraries reject), including non-canonical encodings and a set
	// top bit.
	le := func(n *big.Int, size int) []byte {
		b := n.FillBytes(make([]byte, size))
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return b
	}
	p25519 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	order8, _ := new(big.Int).SetString("325606250916557431795983626356110631294008115727848805560023387167927233504", 10)
	one := le(big.NewInt(1), 32)
	oneTopBit := append([]byte(nil), one...)
	oneTopBit[31] |= 0x80
	p448 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 448), new(big.Int).Lsh(big.NewInt(1), 224))
	p448.Sub(p448, big.NewInt(1))

	cases := []struct {
		key, name string
		peer      []byte
		msg       string
	}{
		{"P-256", "off curve", offCurve, "not on the curve"},
		{"P-256", "identity", []byte{0}, "must be 65 bytes"},
		{"P-256", "all zero", make([]byte, 65), "must be 65 bytes"},
		{"P-256", "zero coordinates", append([]byte{4}, make([]byte, 64)...), "not on the curve"},
		{"P-256", "compressed", compressed, "must be 65 bytes"},
		{"P-256", "truncated", g[:64], "must be 65 bytes"},
		{"P-256", "P-384 point", good384.PublicKey().Bytes(), "must be 65 bytes"},
		{"P-256", "empty", nil, "got 0"},
		{"P-384", "P-256 point", g, "must be 97 bytes"},
		{"P-521", "garbage", make([]byte, 133), "must be 133 bytes"},
		{"X25519", "zero", make([]byte, 32), "small order"},
		{"X25519", "one", one, "small order"},
		{"X25519", "one, top bit set", oneTopBit, "small order"},
		{"X25519", "order 8", le(order8, 32), "small order"},
		{"X25519", "p-1", le(new(big.Int).Sub(p25519, big.NewInt(1)), 32), "small order"},
		{"X25519", "p (non-canonical 0)", le(p25519, 32), "small order"},
		{"X25519", "short", make([]byte, 31), "must be 32 bytes"},
		{"X448", "zero", make([]byte, 56), "small order"},
		{"X448", "one", le(big.NewInt(1), 56), "small order"},
		{"X448", "p-1", le(new(big.Int).Sub(p448, big.NewInt(1)), 56), "small order"},
		{"X448", "X25519 size", make([]byte, 32), "must be 56 bytes"},
	}
	for _, c := range cases {
		t.Run(c.key+"/"+c.name, func(t *testing.T) {
			z, err := keys[c.key].ECDHContext(ctx, c.peer)
			if z != nil {
				t.Fatalf("got a secret %x", z)
			}
			wantErr(t, err, kem.ErrInvalidPublicKey, c.key, c.msg)
		})
	}
	// crypto/ecdh path: a peer on another curve.
	_, err := keys["P-256"].ECDH(good384.PublicKey())
	wantErr(t, err, kem.ErrInvalidPublicKey, "P-384")
	_, err = keys["X448"].ECDH(good256.PublicKey())
	wantErr(t, err, pkcs11.ErrUnsupportedKeyType, "X448")
}
