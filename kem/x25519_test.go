package kem_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// x25519Soft is a software X25519 key of the scalar sk, as this package's
// exchanges use it, and the same key in crypto/ecdh.
func x25519Soft(t testing.TB, sk []byte) (kem.Exchanger, ecdh.KeyExchanger, *ecdh.PrivateKey) {
	t.Helper()
	k, err := kem.NewPrivateKey(kem.DHKEMX25519HKDFSHA256, sk)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ecdh.X25519().NewPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	x, ok := k.(kem.Exchanger)
	if !ok {
		t.Fatalf("a software X25519 key (%T) is not a kem.Exchanger", k)
	}
	kx, ok := k.(ecdh.KeyExchanger)
	if !ok {
		t.Fatalf("a software X25519 key (%T) is not an ecdh.KeyExchanger", k)
	}
	return x, kx, ref
}

// checkX25519Matches asserts that both exchanges of a software X25519 key
// (kem.Exchanger's ECDHContext and ecdh.KeyExchanger's ECDH) give
// crypto/ecdh's output for peer, or fail where crypto/ecdh fails, with
// ErrInvalidPublicKey from ECDHContext.
func checkX25519Matches(t *testing.T, sk, peer []byte) {
	t.Helper()
	x, kx, ref := x25519Soft(t, sk)
	var want []byte
	pub, refErr := ecdh.X25519().NewPublicKey(peer)
	if refErr == nil {
		want, refErr = ref.ECDH(pub)
	}
	got, err := x.ECDHContext(context.Background(), peer)
	if refErr != nil {
		if !errors.Is(err, kem.ErrInvalidPublicKey) {
			t.Fatalf("peer %x: ECDHContext gave %x, %v; crypto/ecdh fails (%v), want ErrInvalidPublicKey", peer, got, err, refErr)
		}
	} else if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("peer %x: ECDHContext gave %x, %v; crypto/ecdh gives %x", peer, got, err, want)
	}
	if pub == nil {
		return
	}
	got, err = kx.ECDH(pub)
	if (err != nil) != (refErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("peer %x: ECDH gave %x, %v; crypto/ecdh gives %x, %v", peer, got, err, want, refErr)
	}
}

// le returns n as 32 little-endian bytes (its low 256 bits).
func le(n *big.Int) []byte {
	b := make([]byte, 32)
	n.FillBytes(b)
	for i, j := 0, 31; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return b
}

// x25519EdgePeers are the u-coordinates where X25519 implementations tend
// to differ: the low-order points of the curve and its twist, their
// non-canonical encodings (u + p), values at and above p, and each with
// the top bit set, which RFC 7748 says to ignore.
func x25519EdgePeers() [][]byte {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	order8a, _ := new(big.Int).SetString("325606250916557431795983626356110631294008115727848805560023387167927233504", 10)
	order8b, _ := new(big.Int).SetString("39382357235489614581723060781553021112529911719440698176882885853963445705823", 10)
	var us []*big.Int
	for _, u := range []*big.Int{big.NewInt(0), big.NewInt(1), order8a, order8b, new(big.Int).Sub(p, big.NewInt(1))} {
		us = append(us, u, new(big.Int).Add(u, p))
	}
	for i := range int64(19) {
		us = append(us, new(big.Int).Add(p, big.NewInt(i)))
	}
	us = append(us, big.NewInt(9), new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(1)))
	var peers [][]byte
	for _, u := range us {
		b := le(u)
		hi := bytes.Clone(b)
		hi[31] |= 0x80
		peers = append(peers, b, hi)
	}
	return peers
}

// TestX25519MatchesCryptoECDH holds the software X25519 key's exchanges
// (circl's X25519, for speed) to crypto/ecdh's: RFC 7748's vectors, the
// edge u-coordinates, random peers with and without the top bit, and the
// wrong lengths, which fail with ErrInvalidPublicKey.
func TestX25519MatchesCryptoECDH(t *testing.T) {
	// RFC 7748 section 6.1: Alice's private key, Bob's public key, and
	// their shared secret.
	aliceSK, _ := hex.DecodeString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	bobPK, _ := hex.DecodeString("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	shared, _ := hex.DecodeString("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
	x, _, _ := x25519Soft(t, aliceSK)
	if got, err := x.ECDHContext(context.Background(), bobPK); err != nil || !bytes.Equal(got, shared) {
		t.Fatalf("RFC 7748 6.1: %x, %v; want %x", got, err, shared)
	}
	checkX25519Matches(t, aliceSK, bobPK)

	sks := [][]byte{aliceSK, bytes.Repeat([]byte{0xff}, 32), make([]byte, 32)}
	for range 8 {
		sk := make([]byte, 32)
		rand.Read(sk)
		sks = append(sks, sk)
	}
	for _, sk := range sks {
		for _, peer := range x25519EdgePeers() {
			checkX25519Matches(t, sk, peer)
		}
		for range 64 {
			peer := make([]byte, 32)
			rand.Read(peer)
			checkX25519Matches(t, sk, peer)
			peer[31] ^= 0x80
			checkX25519Matches(t, sk, peer)
		}
		for _, n := range []int{0, 31, 33, 64} {
			checkX25519Matches(t, sk, make([]byte, n))
		}
	}
}

// FuzzX25519MatchesCryptoECDH is TestX25519MatchesCryptoECDH's comparison
// for any scalar and peer.
func FuzzX25519MatchesCryptoECDH(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	for _, peer := range x25519EdgePeers()[:8] {
		f.Add(bytes.Repeat([]byte{7}, 32), peer)
	}
	f.Fuzz(func(t *testing.T, sk, peer []byte) {
		if len(sk) != 32 {
			if _, err := kem.NewPrivateKey(kem.DHKEMX25519HKDFSHA256, sk); err == nil {
				t.Fatalf("NewPrivateKey took an X25519 scalar of %d bytes", len(sk))
			}
			return
		}
		checkX25519Matches(t, sk, peer)
	})
}

// BenchmarkX25519 compares a software X25519 key's ECDHContext (circl's
// X25519 on amd64, crypto/ecdh's elsewhere) with crypto/ecdh's ECDH of the
// same key and peer, side by side in one loop.
// Run: go test ./kem -run '^$' -bench X25519 -count 5
func BenchmarkX25519(b *testing.B) {
	sk := make([]byte, 32)
	rand.Read(sk)
	x, _, ref := x25519Soft(b, sk)
	peerKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	peer := peerKey.PublicKey().Bytes()
	impls := []struct {
		name string
		run  func() error
	}{
		{"ours", func() error { _, err := x.ECDHContext(context.Background(), peer); return err }},
		{"crypto-ecdh", func() error {
			pub, err := ecdh.X25519().NewPublicKey(peer)
			if err == nil {
				_, err = ref.ECDH(pub)
			}
			return err
		}},
	}
	times := make([]float64, len(impls))
	var n int
	for b.Loop() {
		for k := range impls {
			j := (n + k) % len(impls)
			t0 := time.Now()
			if err := impls[j].run(); err != nil {
				b.Fatal(err)
			}
			times[j] += float64(time.Since(t0))
		}
		n++
	}
	for j, impl := range impls {
		b.ReportMetric(times[j]/float64(n)/1e3, impl.name+"-µs/op")
	}
	b.ReportMetric(times[0]/times[1], "ours/crypto-ecdh")
	b.ReportMetric(0, "ns/op") // the per-iteration time is both together
}
