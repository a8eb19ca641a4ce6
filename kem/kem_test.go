package kem_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/mlkem"
	"errors"
	"testing"
	"time"

	circlhpke "github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/internal/hpkevectors"
	"github.com/twoway-hsm/twoway-hsm/internal/keyschedule"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// ecdhOnly is an ecdh.KeyExchanger whose only capability is ECDH: it stands
// for a hardware key.
type ecdhOnly struct{ k *ecdh.PrivateKey }

func (e ecdhOnly) PublicKey() *ecdh.PublicKey             { return e.k.PublicKey() }
func (e ecdhOnly) Curve() ecdh.Curve                      { return e.k.Curve() }
func (e ecdhOnly) ECDH(p *ecdh.PublicKey) ([]byte, error) { return e.k.ECDH(p) }

// exchangerOnly is a kem.Exchanger that exposes nothing but its public key
// and the Diffie-Hellman step, for X448.
type exchangerOnly struct{ x kem.Exchanger }

func (e exchangerOnly) KEM() kem.ID            { return e.x.KEM() }
func (e exchangerOnly) PublicKeyBytes() []byte { return e.x.PublicKeyBytes() }
func (e exchangerOnly) ECDHContext(ctx context.Context, peer []byte) ([]byte, error) {
	return e.x.ECDHContext(ctx, peer)
}

// TestRFC9180VectorsThroughInterface decapsulates every base-mode vector of
// the KEMs this module supports through kem.PrivateKey: from a software key,
// from an ECDH-only key exchanger, and from an Exchanger; each gives the
// vector's shared secret, and the context built from it the vector's
// exported values.
func TestRFC9180VectorsThroughInterface(t *testing.T) {
	n := 0
	for _, v := range hpkevectors.Base(t) {
		id := kem.ID(v.KEM)
		soft, err := kem.NewPrivateKey(id, v.SkRm)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(soft.PublicKeyBytes(), v.PkRm) {
			t.Fatalf("%v: public key %x, want %x", id, soft.PublicKeyBytes(), v.PkRm)
		}
		keys := map[string]kem.PrivateKey{"software": soft}
		if c := id.Curve(); c != nil {
			ek, err := c.NewPrivateKey(v.SkRm)
			if err != nil {
				t.Fatal(err)
			}
			if keys["key exchanger"], err = kem.FromKeyExchanger(ecdhOnly{ek}); err != nil {
				t.Fatal(err)
			}
		}
		if keys["exchanger"], err = kem.DHKEM(exchangerOnly{soft.(kem.Exchanger)}); err != nil {
			t.Fatal(err)
		}
		for name, k := range keys {
			ss, err := k.DecapsulateContext(context.Background(), v.Enc)
			if err != nil {
				t.Fatalf("%v %s: %v", id, name, err)
			}
			if !bytes.Equal(ss, v.SharedSecret) {
				t.Fatalf("%v %s: shared secret %x, want %x", id, name, ss, v.SharedSecret)
			}
			if v.AEAD == 0xffff {
				continue
			}
			c, err := keyschedule.NewContext(keyschedule.Suite{KEM: v.KEM, KDF: v.KDF, AEAD: v.AEAD}, ss, v.Info)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range v.Exports {
				got, _ := c.Export(e.Context, e.L)
				if !bytes.Equal(got, e.Value) {
					t.Fatalf("%v %s: export %x = %x, want %x", id, name, e.Context, got, e.Value)
				}
			}
			n++
		}
	}
	if n < 40 {
		t.Fatalf("only %d vector decapsulations checked", n)
	}
}

// TestStandardLibraryAcceptsKeys: software DH keys are ecdh.KeyExchangers
// and ML-KEM keys crypto.Decapsulators, so crypto/hpke takes them directly,
// and their own decapsulation agrees with crypto/hpke's encapsulation.
func TestStandardLibraryAcceptsKeys(t *testing.T) {
	for _, id := range []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMP384HKDFSHA384, kem.DHKEMP521HKDFSHA512, kem.DHKEMX25519HKDFSHA256, kem.MLKEM768, kem.MLKEM1024} {
		k, err := kem.GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		var hk hpke.PrivateKey
		switch kk := k.(type) {
		case ecdh.KeyExchanger:
			hk, err = hpke.NewDHKEMPrivateKey(kk)
		case crypto.Decapsulator:
			hk, err = hpke.NewMLKEMPrivateKey(kk)
		default:
			t.Fatalf("%v: %T is neither", id, k)
		}
		if err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		if !bytes.Equal(hk.PublicKey().Bytes(), k.PublicKeyBytes()) {
			t.Fatalf("%v: crypto/hpke sees another public key", id)
		}
		ct, err := hpke.Seal(hk.PublicKey(), hpke.HKDFSHA256(), hpke.AES128GCM(), []byte("i"), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := hpke.Open(hk, hpke.HKDFSHA256(), hpke.AES128GCM(), []byte("i"), ct)
		if err != nil || string(pt) != "hello" {
			t.Fatalf("%v: crypto/hpke open: %v", id, err)
		}
		enc, sender, err := hpke.NewSender(hk.PublicKey(), hpke.HKDFSHA256(), hpke.AES128GCM(), []byte("i"))
		if err != nil {
			t.Fatal(err)
		}
		ss, err := k.DecapsulateContext(context.Background(), enc)
		if err != nil {
			t.Fatalf("%v: decapsulate: %v", id, err)
		}
		c, err := keyschedule.NewContext(keyschedule.Suite{KEM: uint16(id), KDF: keyschedule.KDFHKDFSHA256, AEAD: keyschedule.AEADAES128GCM}, ss, []byte("i"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := c.Export([]byte("x"), 32)
		if want, _ := sender.Export("x", 32); !bytes.Equal(got, want) {
			t.Fatalf("%v: our decapsulation and crypto/hpke's encapsulation disagree", id)
		}
		b, _ := kem.MarshalPrivateKey(k)
		again, err := kem.NewPrivateKey(id, b)
		if err != nil || !bytes.Equal(again.PublicKeyBytes(), k.PublicKeyBytes()) {
			t.Fatalf("%v: marshal round trip: %v", id, err)
		}
	}
}

func TestFrom(t *testing.T) {
	ek, _ := ecdh.P256().GenerateKey(nil)
	dk, _ := mlkem.GenerateKey768()
	_, csk, _ := circlhpke.KEM_X448_HKDF_SHA512.Scheme().GenerateKeyPair()
	soft, _ := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	for _, c := range []struct {
		key  any
		want kem.ID
	}{
		{ek, kem.DHKEMP256HKDFSHA256},
		{ecdhOnly{ek}, kem.DHKEMP256HKDFSHA256},
		{dk, kem.MLKEM768},
		{csk, kem.DHKEMX448HKDFSHA512},
		{soft, kem.DHKEMX25519HKDFSHA256},
		{exchangerOnly{soft.(kem.Exchanger)}, kem.DHKEMX25519HKDFSHA256},
	} {
		k, err := kem.From(c.key)
		if err != nil {
			t.Fatalf("%T: %v", c.key, err)
		}
		if k.KEM() != c.want {
			t.Fatalf("%T: %v, want %v", c.key, k.KEM(), c.want)
		}
	}
	if k, err := kem.From(nil); err == nil {
		t.Fatalf("nil: %v", k)
	}
	for _, bad := range []any{"a string", 42} {
		if _, err := kem.From(bad); !errors.Is(err, kem.ErrUnsupportedKEM) {
			t.Fatalf("%T: %v", bad, err)
		}
	}
}

func TestInvalidEncapsulatedKeys(t *testing.T) {
	for _, id := range []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMX25519HKDFSHA256, kem.DHKEMX448HKDFSHA512} {
		k, _ := kem.GenerateKey(id)
		cases := map[string][]byte{
			"empty": nil,
			"short": make([]byte, id.EncapsulatedKeySize()-1),
			"long":  make([]byte, id.EncapsulatedKeySize()+1),
		}
		if id == kem.DHKEMP256HKDFSHA256 {
			off := make([]byte, 65)
			off[0] = 4
			off[64] = 1
			cases["off the curve"] = off
		} else {
			// the zero u-coordinate is a low-order point
			cases["low order"] = make([]byte, id.EncapsulatedKeySize())
		}
		for name, enc := range cases {
			_, err := k.DecapsulateContext(context.Background(), enc)
			if !errors.Is(err, kem.ErrInvalidPublicKey) {
				t.Errorf("%v %s: %v, want ErrInvalidPublicKey", id, name, err)
			}
		}
	}
}

// slowExchanger is a key exchanger that takes a second, like a busy HSM.
type slowExchanger struct{ ecdhOnly }

func (s slowExchanger) ECDH(p *ecdh.PublicKey) ([]byte, error) {
	time.Sleep(time.Second)
	return s.ecdhOnly.ECDH(p)
}

func TestContextCancelsContextlessKeyExchanger(t *testing.T) {
	ek, _ := ecdh.X25519().GenerateKey(nil)
	k, err := kem.FromKeyExchanger(slowExchanger{ecdhOnly{ek}})
	if err != nil {
		t.Fatal(err)
	}
	peer, _ := ecdh.X25519().GenerateKey(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = k.DecapsulateContext(ctx, peer.PublicKey().Bytes())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("returned after %v, not promptly", d)
	}
}

func TestMarshalHardwareKeyRefused(t *testing.T) {
	ek, _ := ecdh.P256().GenerateKey(nil)
	k, _ := kem.FromKeyExchanger(ecdhOnly{ek})
	if _, err := kem.MarshalPrivateKey(k); err == nil {
		t.Fatal("an opaque key was marshalled")
	}
}

// zeroExchanger breaks the Exchanger contract the way a token that does not
// check for low-order points would: its Diffie-Hellman output is all zero.
type zeroExchanger struct{ kem.Exchanger }

func (z zeroExchanger) ECDHContext(context.Context, []byte) ([]byte, error) {
	return make([]byte, z.KEM().DHSize()), nil
}

// TestAllZeroDHRefused: DHKEM refuses an all-zero Diffie-Hellman output
// whatever the exchanger let through, so no shared secret is derived from it.
func TestAllZeroDHRefused(t *testing.T) {
	for _, id := range []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMX25519HKDFSHA256, kem.DHKEMX448HKDFSHA512} {
		soft, err := kem.GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		k, err := kem.DHKEM(zeroExchanger{soft.(kem.Exchanger)})
		if err != nil {
			t.Fatal(err)
		}
		peer, _ := kem.GenerateKey(id)
		if ss, err := k.DecapsulateContext(context.Background(), peer.PublicKeyBytes()); !errors.Is(err, kem.ErrInvalidPublicKey) {
			t.Errorf("%v: shared secret %x, error %v; want ErrInvalidPublicKey", id, ss, err)
		}
	}
}
