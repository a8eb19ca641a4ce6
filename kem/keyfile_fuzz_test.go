package kem_test

import (
	"bytes"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// FuzzParsePrivateKeyPEM checks that any key file parses or fails without
// panicking, and that a key that parses marshals to a file that parses to
// the same key.
func FuzzParsePrivateKeyPEM(f *testing.F) {
	for _, id := range []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMX25519HKDFSHA256, kem.DHKEMX448HKDFSHA512, kem.MLKEM768} {
		k, _ := kem.GenerateKey(id)
		b, _ := kem.MarshalPrivateKeyPEM(k)
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN HPKE PRIVATE KEY-----\nKEM: 0x0020\n\nAAAA\n-----END HPKE PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := kem.ParsePrivateKeyPEM(b)
		if err != nil {
			return
		}
		out, err := kem.MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatalf("a parsed %v key does not marshal: %v", k.KEM(), err)
		}
		again, err := kem.ParsePrivateKeyPEM(out)
		if err != nil || again.KEM() != k.KEM() || !bytes.Equal(again.PublicKeyBytes(), k.PublicKeyBytes()) {
			t.Fatalf("%v key does not survive a marshal round trip: %v", k.KEM(), err)
		}
	})
}
