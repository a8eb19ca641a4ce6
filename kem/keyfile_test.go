package kem_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

func TestKeyFileRoundTrip(t *testing.T) {
	for _, id := range []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMP384HKDFSHA384, kem.DHKEMP521HKDFSHA512, kem.DHKEMX25519HKDFSHA256, kem.DHKEMX448HKDFSHA512, kem.MLKEM768, kem.MLKEM1024, kem.XWing} {
		k, err := kem.GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		pemBytes, err := kem.MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		if (id.Curve() != nil || id == kem.DHKEMX448HKDFSHA512) && !strings.Contains(string(pemBytes), "BEGIN PRIVATE KEY") {
			t.Fatalf("%v: not written as PKCS#8", id)
		}
		back, err := kem.ParsePrivateKeyPEM(pemBytes)
		if err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		if back.KEM() != id || !bytes.Equal(back.PublicKeyBytes(), k.PublicKeyBytes()) {
			t.Fatalf("%v: parsed another key", id)
		}
	}
}

func TestKeyFileFromOtherTools(t *testing.T) {
	// SEC 1 and PKCS#8 ECDSA keys, as openssl writes them.
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ek)
	p8, _ := x509.MarshalPKCS8PrivateKey(ek)
	for _, b := range []*pem.Block{{Type: "EC PRIVATE KEY", Bytes: sec1}, {Type: "PRIVATE KEY", Bytes: p8}} {
		k, err := kem.ParsePrivateKeyPEM(pem.EncodeToMemory(b))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ek.ECDH()
		if k.KEM() != kem.DHKEMP384HKDFSHA384 || !bytes.Equal(k.PublicKeyBytes(), want.PublicKey().Bytes()) {
			t.Fatalf("%s: wrong key", b.Type)
		}
	}
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	xp8, _ := x509.MarshalPKCS8PrivateKey(x)
	if k, err := kem.ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: xp8})); err != nil || k.KEM() != kem.DHKEMX25519HKDFSHA256 {
		t.Fatalf("X25519 PKCS#8: %v", err)
	}
	for name, b := range map[string]string{
		"empty":    "",
		"not PEM":  "hello",
		"RSA":      "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
		"bad KEM":  "-----BEGIN HPKE PRIVATE KEY-----\nKEM: nope\n\nAAAA\n-----END HPKE PRIVATE KEY-----\n",
		"trailing": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: xp8})) + "junk",
	} {
		if _, err := kem.ParsePrivateKeyPEM([]byte(b)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// TestX448PKCS8FromOpenSSL parses an X448 PKCS#8 key as
// "openssl genpkey -algorithm X448" writes it (RFC 8410) and checks its
// public key against RFC 7748's test vector for that scalar.
func TestX448PKCS8FromOpenSSL(t *testing.T) {
	// RFC 7748 section 6.2, Alice's private key and public key.
	scalar := "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b"
	wantPub := "9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0"
	der := "3046020100300506032b656f043a0438" + scalar
	b, _ := hex.DecodeString(der)
	k, err := kem.ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b}))
	if err != nil {
		t.Fatal(err)
	}
	if k.KEM() != kem.DHKEMX448HKDFSHA512 || hex.EncodeToString(k.PublicKeyBytes()) != wantPub {
		t.Fatalf("%v key with public key %x", k.KEM(), k.PublicKeyBytes())
	}
	out, err := kem.MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(out)
	if hex.EncodeToString(blk.Bytes) != der {
		t.Fatalf("re-encoded as %x, want %s", blk.Bytes, der)
	}
}
