package pkcs11_test

import (
	"bytes"
	"context"
	"crypto/hpke"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// TestHPKEInterop hands a token key straight to crypto/hpke as an
// ecdh.KeyExchanger and opens messages sealed with crypto/hpke.Seal.
func TestHPKEInterop(t *testing.T) {
	_, tok := openToken(t)
	ctx := context.Background()
	kdfs := map[kem.ID]hpke.KDF{
		kem.DHKEMP256HKDFSHA256:   hpke.HKDFSHA256(),
		kem.DHKEMP384HKDFSHA384:   hpke.HKDFSHA384(),
		kem.DHKEMP521HKDFSHA512:   hpke.HKDFSHA512(),
		kem.DHKEMX25519HKDFSHA256: hpke.HKDFSHA256(),
	}
	for i, c := range dhCurves[:4] {
		t.Run(c.name, func(t *testing.T) {
			key, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: []byte{0x80, byte(i)}})
			if err != nil {
				t.Fatal(err)
			}
			priv, err := hpke.NewDHKEMPrivateKey(key)
			if err != nil {
				t.Fatalf("NewDHKEMPrivateKey: %v", err)
			}
			if priv.KEM().ID() != uint16(c.kem) {
				t.Fatalf("KEM %#x, want %#x", priv.KEM().ID(), uint16(c.kem))
			}
			pub, err := hpke.NewDHKEMPublicKey(key.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			for _, aead := range []hpke.AEAD{hpke.AES128GCM(), hpke.ChaCha20Poly1305()} {
				msg := []byte("a secret for " + c.name)
				ct, err := hpke.Seal(pub, kdfs[c.kem], aead, []byte("app info"), msg)
				if err != nil {
					t.Fatal(err)
				}
				pt, err := hpke.Open(priv, kdfs[c.kem], aead, []byte("app info"), ct)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !bytes.Equal(pt, msg) {
					t.Fatalf("opened %q", pt)
				}
				// A tampered encapsulated key must fail, not decrypt.
				ct[3] ^= 0x40
				if _, err := hpke.Open(priv, kdfs[c.kem], aead, []byte("app info"), ct); err == nil {
					t.Fatal("tampered message opened")
				}
			}
		})
	}
}
