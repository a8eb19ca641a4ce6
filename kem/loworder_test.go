package kem_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"math/big"
	"slices"
	"testing"

	"github.com/cloudflare/circl/dh/x448"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// TestLowOrderPoints checks IsLowOrderPoint against independent
// implementations: every u it reports for X25519 makes crypto/ecdh's
// X25519 fail (its output is all zero), with the top bit set too, and
// every u for X448 makes circl's fail; random points are not reported, nor
// are other KEMs' keys; CheckPublicKey and the decapsulation of every
// software key and adapter refuse them with ErrInvalidPublicKey.
func TestLowOrderPoints(t *testing.T) {
	x25519 := x25519EdgePeers() // every candidate, each also with the top bit set
	seen := map[string]bool{}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for _, u := range x25519 {
		pub, err := ecdh.X25519().NewPublicKey(u)
		if err != nil {
			t.Fatal(err)
		}
		_, ecdhErr := priv.ECDH(pub)
		if low := kem.IsLowOrderPoint(kem.DHKEMX25519HKDFSHA256, u); low != (ecdhErr != nil) {
			t.Errorf("X25519 u=%x: IsLowOrderPoint %v, crypto/ecdh's error %v", u, low, ecdhErr)
		} else if low {
			seen[string(u)] = true
		}
	}
	if len(seen) != 14 { // 7 encodings, each with the top bit clear and set
		t.Errorf("%d X25519 encodings reported, want 14", len(seen))
	}
	p448 := new(big.Int).Sub(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 448), new(big.Int).Lsh(big.NewInt(1), 224)), big.NewInt(1))
	var sk x448.Key
	rand.Read(sk[:])
	reported := 0
	for _, v := range []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(2), big.NewInt(5),
		new(big.Int).Sub(p448, big.NewInt(2)), new(big.Int).Sub(p448, big.NewInt(1)), p448,
		new(big.Int).Add(p448, big.NewInt(1)), new(big.Int).Add(p448, big.NewInt(2))} {
		u := v.FillBytes(make([]byte, 56))
		slices.Reverse(u)
		var out, pk x448.Key
		copy(pk[:], u)
		circlOK := x448.Shared(&out, &sk, &pk)
		if low := kem.IsLowOrderPoint(kem.DHKEMX448HKDFSHA512, u); low == circlOK {
			t.Errorf("X448 u=%v: IsLowOrderPoint %v, circl's Shared %v", v, low, circlOK)
		} else if low {
			reported++
		}
	}
	if reported != 5 { // 0, 1, p - 1, p and p + 1
		t.Errorf("%d X448 encodings reported, want 5", reported)
	}
	for range 100 {
		p, _ := ecdh.X25519().GenerateKey(rand.Reader)
		if kem.IsLowOrderPoint(kem.DHKEMX25519HKDFSHA256, p.PublicKey().Bytes()) {
			t.Fatal("a random X25519 key is reported as small order")
		}
	}
	if kem.IsLowOrderPoint(kem.DHKEMP256HKDFSHA256, make([]byte, 65)) || kem.IsLowOrderPoint(kem.DHKEMX25519HKDFSHA256, make([]byte, 31)) {
		t.Error("a P-256 key or a short X25519 key is reported as small order")
	}

	// Every way in refuses them with ErrInvalidPublicKey.
	zero := make([]byte, 32)
	if err := kem.CheckPublicKey(kem.DHKEMX25519HKDFSHA256, zero); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Errorf("CheckPublicKey: %v", err)
	}
	soft, _ := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	adapted, err := kem.FromKeyExchanger(priv)
	if err != nil {
		t.Fatal(err)
	}
	opaque, err := kem.FromKeyExchanger(ecdhOnly{priv})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, k := range map[string]kem.PrivateKey{"software key": soft, "*ecdh.PrivateKey": adapted, "opaque ecdh.KeyExchanger": opaque} {
		for _, u := range [][]byte{zero, x25519[2]} {
			if ss, err := k.DecapsulateContext(ctx, u); !errors.Is(err, kem.ErrInvalidPublicKey) {
				t.Errorf("%s: decapsulating u=%x: %x, %v; want ErrInvalidPublicKey", name, u, ss, err)
			}
			if x, ok := k.(kem.Exchanger); ok {
				if dh, err := x.ECDHContext(ctx, u); !errors.Is(err, kem.ErrInvalidPublicKey) {
					t.Errorf("%s: ECDHContext with u=%x: %x, %v; want ErrInvalidPublicKey", name, u, dh, err)
				}
			}
		}
	}
}
