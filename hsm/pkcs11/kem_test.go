package pkcs11_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/cloudflare/circl/dh/x448"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// TestKEMAdapter decapsulates with a token key through the kem package's
// DHKEM adapter over the key's ECDH (a *pkcs11.Key is a kem.PrivateKey
// itself, so kem.From would return it unchanged) and compares with the same
// key in software, for every DHKEM including X448.
func TestKEMAdapter(t *testing.T) {
	_, tok := openToken(t)
	ctx := context.Background()
	for i, c := range dhCurves {
		t.Run(c.name, func(t *testing.T) {
			ref := pkcs11.KeyRef{ID: []byte{0xa0, byte(i)}}
			var scalar []byte
			var hw *pkcs11.Key
			var err error
			if c.ecdh != nil {
				p, _ := c.ecdh.GenerateKey(rand.Reader)
				scalar = p.Bytes()
				hw, err = tok.ImportKey(ctx, p, ref)
			} else {
				scalar = make([]byte, x448.Size)
				rand.Read(scalar)
				hw, err = tok.ImportX448Key(ctx, scalar, ref)
			}
			if err != nil {
				t.Fatal(err)
			}
			soft, err := kem.NewPrivateKey(c.kem, scalar)
			if err != nil {
				t.Fatal(err)
			}
			viaKEM, err := kem.DHKEM(hw)
			if err != nil {
				t.Fatalf("kem.DHKEM: %v", err)
			}
			if viaKEM.KEM() != c.kem || !bytes.Equal(viaKEM.PublicKeyBytes(), soft.PublicKeyBytes()) {
				t.Fatalf("KEM %v, public key mismatch", viaKEM.KEM())
			}
			for range 3 {
				enc, _ := softwarePeer(t, c.ecdh) // an ephemeral public key as enc
				want, err := soft.DecapsulateContext(ctx, enc)
				if err != nil {
					t.Fatal(err)
				}
				got, err := viaKEM.DecapsulateContext(ctx, enc)
				if err != nil {
					t.Fatalf("hardware decapsulate: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("shared secrets differ")
				}
			}
		})
	}
}
