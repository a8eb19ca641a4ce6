package kem_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
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
		if id.Curve() != nil && !strings.Contains(string(pemBytes), "BEGIN PRIVATE KEY") {
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
