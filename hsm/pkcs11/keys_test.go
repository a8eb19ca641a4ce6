package pkcs11_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/cloudflare/circl/dh/x448"
	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

func TestGenerateAndECDH(t *testing.T) {
	_, tok := openToken(t)
	ctx := context.Background()
	for i, c := range dhCurves {
		t.Run(c.name, func(t *testing.T) {
			id := []byte{0x10, byte(i)}
			k, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: id, Label: "gen-" + c.name})
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			if k.KEM() != c.kem || len(k.PublicKeyBytes()) != c.kem.PublicKeySize() {
				t.Fatalf("KEM %v, public key %d bytes", k.KEM(), len(k.PublicKeyBytes()))
			}
			info := k.Info()
			a := info.Attributes
			if !a.Token || !a.Private || !a.Sensitive || a.Extractable || !a.Derive || !a.Local || !a.NeverExtractable || !a.AlwaysSensitive {
				t.Errorf("attributes %+v", a)
			}
			if !bytes.Equal(k.ID(), id) || k.Label() != "gen-"+c.name {
				t.Errorf("id %x label %q", k.ID(), k.Label())
			}
			for range 3 {
				peerPub, agree := softwarePeer(t, c.ecdh)
				z, err := k.ECDHContext(ctx, peerPub)
				if err != nil {
					t.Fatalf("ECDHContext: %v", err)
				}
				if want := agree(k.PublicKeyBytes()); !bytes.Equal(z, want) {
					t.Fatalf("token %x\nsoftware %x", z, want)
				}
				if len(z) != c.kem.DHSize() {
					t.Fatalf("secret is %d bytes, want %d", len(z), c.kem.DHSize())
				}
			}
			// The same key again by URI attributes.
			k2, err := tok.FindKey(ctx, pkcs11.KeyRef{ID: id})
			if err != nil {
				t.Fatalf("FindKey: %v", err)
			}
			if !bytes.Equal(k2.PublicKeyBytes(), k.PublicKeyBytes()) || k2.URI() != k.URI() {
				t.Fatalf("found a different key: %s vs %s", k2.URI(), k.URI())
			}
			if _, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: id}); !errors.Is(err, pkcs11.ErrKeyExists) {
				t.Fatalf("second GenerateKey with the same id: %v, want ErrKeyExists", err)
			}
		})
	}
}

// TestImportedKeyMatchesSoftware checks that the token computes exactly
// what crypto/ecdh (and circl for X448) computes for the same key pair.
func TestImportedKeyMatchesSoftware(t *testing.T) {
	_, tok := openToken(t)
	ctx := context.Background()
	for i, c := range dhCurves {
		t.Run(c.name, func(t *testing.T) {
			ref := pkcs11.KeyRef{ID: []byte{0x20, byte(i)}, Label: "imp-" + c.name}
			var k *pkcs11.Key
			var ours func(peer []byte) []byte
			var ourPub []byte
			var err error
			if c.ecdh != nil {
				priv, _ := c.ecdh.GenerateKey(rand.Reader)
				ourPub = priv.PublicKey().Bytes()
				ours = func(peer []byte) []byte {
					p, _ := c.ecdh.NewPublicKey(peer)
					z, _ := priv.ECDH(p)
					return z
				}
				k, err = tok.ImportKey(ctx, priv, ref)
			} else {
				var sk, pk x448.Key
				rand.Read(sk[:])
				x448.KeyGen(&pk, &sk)
				ourPub = pk[:]
				ours = func(peer []byte) []byte {
					var out, pp x448.Key
					copy(pp[:], peer)
					x448.Shared(&out, &sk, &pp)
					return out[:]
				}
				k, err = tok.ImportX448Key(ctx, sk[:], ref)
			}
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if !bytes.Equal(k.PublicKeyBytes(), ourPub) {
				t.Fatalf("public key on token %x, want %x", k.PublicKeyBytes(), ourPub)
			}
			a := k.Info().Attributes
			if !a.Sensitive || a.Extractable || !a.Derive || a.Local {
				t.Errorf("imported attributes %+v", a)
			}
			for range 4 {
				peer, _ := softwarePeer(t, c.ecdh)
				z, err := k.ECDHContext(ctx, peer)
				if err != nil {
					t.Fatal(err)
				}
				if want := ours(peer); !bytes.Equal(z, want) {
					t.Fatalf("token %x\nsoftware %x", z, want)
				}
			}
		})
	}
}

// TestDERWrappedPoints feeds the peer point DER-wrapped, as CKA_EC_POINT
// holds it, and expects the same secret as the raw point.
func TestDERWrappedPoints(t *testing.T) {
	_, tok := openToken(t)
	ctx := context.Background()
	for i, c := range dhCurves {
		k, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: []byte{0x30, byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		peer, _ := softwarePeer(t, c.ecdh)
		z1, err := k.ECDHContext(ctx, peer)
		if err != nil {
			t.Fatal(err)
		}
		wrapped := derOctetString(peer)
		z2, err := k.ECDHContext(ctx, wrapped)
		if err != nil {
			t.Fatalf("%s wrapped: %v", c.name, err)
		}
		if !bytes.Equal(z1, z2) {
			t.Fatalf("%s: raw and wrapped disagree", c.name)
		}
	}
}

func derOctetString(b []byte) []byte {
	switch {
	case len(b) < 128:
		return append([]byte{0x04, byte(len(b))}, b...)
	case len(b) < 256:
		return append([]byte{0x04, 0x81, byte(len(b))}, b...)
	}
	panic("too long")
}

// TestPrivateValueUnreadable checks that the token refuses to reveal the
// private scalar of generated and imported keys.
func TestPrivateValueUnreadable(t *testing.T) {
	sh, tok := openToken(t)
	ctx := context.Background()
	gen, err := tok.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	imp, err := tok.ImportKey(ctx, priv, pkcs11.KeyRef{ID: []byte{2}})
	if err != nil {
		t.Fatal(err)
	}
	c, s := rawSession(t, sh, tok)
	for _, k := range []*pkcs11.Key{gen, imp} {
		h := findPrivate(t, c, s, k.ID())
		_, err := c.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
		if !errors.Is(err, p11.Error(p11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Fatalf("reading CKA_VALUE of %s: %v, want CKR_ATTRIBUTE_SENSITIVE", k.URI(), err)
		}
		a, err := c.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_EXTRACTABLE, nil)})
		if err != nil || len(a[0].Value) != 1 || a[0].Value[0] != 0 {
			t.Fatalf("CKA_EXTRACTABLE = %v (%v), want false", a, err)
		}
	}
}

func TestListFindDelete(t *testing.T) {
	sh, tok := openToken(t)
	ctx := context.Background()
	var made []*pkcs11.Key
	for i, c := range dhCurves {
		k, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: []byte{0x40, byte(i)}, Label: fmt.Sprintf("k%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, k)
	}
	list, err := tok.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(made) {
		t.Fatalf("ListKeys: %d keys, want %d", len(list), len(made))
	}
	byID := map[string]pkcs11.KeyInfo{}
	for _, ki := range list {
		byID[string(ki.ID)] = ki
	}
	for _, k := range made {
		ki, ok := byID[string(k.ID())]
		if !ok || ki.Unusable != nil || ki.KEM != k.KEM() || !bytes.Equal(ki.PublicKey, k.PublicKeyBytes()) || ki.Label != k.Label() {
			t.Errorf("listed %+v for %s", ki, k.URI())
		}
		t.Logf("%s %s %s %v", ki.URI, ki.KeyType, ki.Curve, ki.KEM)
	}

	// FindKeyURI with the URI a list reports.
	for _, ki := range list {
		k, err := tok.FindKeyURI(ctx, ki.URI)
		if err != nil || !bytes.Equal(k.PublicKeyBytes(), ki.PublicKey) {
			t.Fatalf("FindKeyURI(%s): %v", ki.URI, err)
		}
	}
	if _, err := tok.FindKeyURI(ctx, "pkcs11:token=other;id=%40%00"); !errors.Is(err, pkcs11.ErrTokenNotFound) {
		t.Fatalf("FindKeyURI on another token: %v", err)
	}

	// OpenKey with the URI a list reports, plus module and PIN.
	k, err := pkcs11.OpenKey(ctx, sh.KeyURI(made[0].ID(), made[0].Label()))
	if err != nil {
		t.Fatalf("OpenKey: %v", err)
	}
	peer, agree := softwarePeer(t, dhCurves[0].ecdh)
	z, err := k.ECDHContext(ctx, peer)
	if err != nil || !bytes.Equal(z, agree(k.PublicKeyBytes())) {
		t.Fatalf("ECDH through OpenKey: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.ECDHContext(ctx, peer); !errors.Is(err, pkcs11.ErrClosed) {
		t.Fatalf("ECDH after Close: %v, want ErrClosed", err)
	}
	// Find by label only.
	if k, err := tok.FindKey(ctx, pkcs11.KeyRef{Label: "k3"}); err != nil || k.KEM() != kem.DHKEMX25519HKDFSHA256 {
		t.Fatalf("FindKey by label: %v", err)
	}

	// Delete, then the key and its public half are gone, and the Key
	// obtained before reports ErrKeyNotFound.
	if err := tok.DeleteKey(ctx, pkcs11.KeyRef{ID: made[1].ID()}); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.FindKey(ctx, pkcs11.KeyRef{ID: made[1].ID()}); !errors.Is(err, pkcs11.ErrKeyNotFound) {
		t.Fatalf("FindKey after delete: %v", err)
	}
	c, s := rawSession(t, sh, tok)
	c.FindObjectsInit(s, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, made[1].ID())})
	hs, _, _ := c.FindObjects(s, 10)
	c.FindObjectsFinal(s)
	if len(hs) != 0 {
		t.Fatalf("%d objects left after DeleteKey", len(hs))
	}
	peer384, _ := softwarePeer(t, ecdh.P384())
	if _, err := made[1].ECDHContext(ctx, peer384); !errors.Is(err, pkcs11.ErrKeyNotFound) {
		t.Fatalf("ECDH with a deleted key: %v, want ErrKeyNotFound", err)
	}
	if err := tok.DeleteKey(ctx, pkcs11.KeyRef{ID: made[1].ID()}); !errors.Is(err, pkcs11.ErrKeyNotFound) {
		t.Fatalf("second DeleteKey: %v", err)
	}
}
