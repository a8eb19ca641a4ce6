package keyschedule

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"encoding/hex"
	"testing"

	"github.com/cloudflare/circl/dh/x448"

	"github.com/twoway-hsm/twoway-hsm/internal/hpkevectors"
)

// dh computes the raw Diffie-Hellman output from software keys, with the
// standard library where it has the curve and circl for X448.
func dh(t *testing.T, kem uint16, sk, pk []byte) []byte {
	t.Helper()
	if kem == 0x0021 {
		var s, p, out x448.Key
		copy(s[:], sk)
		copy(p[:], pk)
		if !x448.Shared(&out, &s, &p) {
			t.Fatal("x448: low order point")
		}
		return out[:]
	}
	curve := map[uint16]ecdh.Curve{0x10: ecdh.P256(), 0x11: ecdh.P384(), 0x12: ecdh.P521(), 0x20: ecdh.X25519()}[kem]
	priv, err := curve.NewPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := curve.NewPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	z, err := priv.ECDH(pub)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestRFC9180Vectors(t *testing.T) {
	n := 0
	for _, v := range hpkevectors.Base(t) {
		name := hex.EncodeToString([]byte{byte(v.KEM >> 8), byte(v.KEM), byte(v.KDF >> 8), byte(v.KDF), byte(v.AEAD >> 8), byte(v.AEAD)})
		t.Run(name, func(t *testing.T) {
			d, err := NewDHKEM(v.KEM)
			if err != nil {
				t.Fatal(err)
			}
			ss, err := d.SharedSecret(dh(t, v.KEM, v.SkRm, v.Enc), v.Enc, v.PkRm)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ss, v.SharedSecret) {
				t.Fatalf("shared secret %x, want %x", ss, v.SharedSecret)
			}
			if v.AEAD == 0xffff {
				if _, err := NewContext(Suite{v.KEM, v.KDF, v.AEAD}, ss, v.Info); err == nil {
					t.Fatal("export-only AEAD accepted")
				}
				return
			}
			sc, err := NewSchedule(Suite{v.KEM, v.KDF, v.AEAD}, v.Info)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sc.ksc, v.KeyScheduleContext) {
				t.Fatalf("key schedule context %x, want %x", sc.ksc, v.KeyScheduleContext)
			}
			c, err := sc.NewContext(ss)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.exporterSecret, v.ExporterSecret) {
				t.Fatalf("exporter secret %x, want %x", c.exporterSecret, v.ExporterSecret)
			}
			if !bytes.Equal(c.base[:c.nn], v.BaseNonce) {
				t.Fatalf("base nonce %x, want %x", c.base[:c.nn], v.BaseNonce)
			}
			recv, _ := NewContext(Suite{v.KEM, v.KDF, v.AEAD}, ss, v.Info)
			for _, e := range v.Encryptions {
				c.seq, recv.seq = e.Seq, e.Seq
				if got := c.computeNonce(); !bytes.Equal(got, e.Nonce) {
					t.Fatalf("seq %d: nonce %x, want %x", e.Seq, got, e.Nonce)
				}
				// Seal in place: the buffer holds pt and has room for the tag.
				buf := make([]byte, len(e.PT), len(e.PT)+c.Overhead())
				copy(buf, e.PT)
				ct, err := c.Seal(buf[:0], buf, e.AAD)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ct, e.CT) {
					t.Fatalf("seq %d: ct %x, want %x", e.Seq, ct, e.CT)
				}
				pt, err := recv.Open(ct[:0], ct, e.AAD)
				if err != nil || !bytes.Equal(pt, e.PT) {
					t.Fatalf("seq %d: open: %v", e.Seq, err)
				}
				if c.seq != e.Seq+1 || recv.seq != e.Seq+1 {
					t.Fatal("sequence number did not advance")
				}
			}
			for _, e := range v.Exports {
				got, err := c.Export(e.Context, e.L)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, e.Value) {
					t.Fatalf("export %x: %x, want %x", e.Context, got, e.Value)
				}
			}
			n++
		})
	}
	if n < 20 {
		t.Fatalf("only %d vectors exercised", n)
	}
}

func TestOpenFailureDoesNotAdvance(t *testing.T) {
	c, err := NewContext(Suite{0x20, 1, 1}, make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(nil, make([]byte, 20), nil); err == nil {
		t.Fatal("garbage opened")
	}
	if c.seq != 0 {
		t.Fatal("failed Open advanced the sequence")
	}
}

func TestSequenceOverflow(t *testing.T) {
	c, _ := NewContext(Suite{0x20, 1, 1}, make([]byte, 32), nil)
	c.seq = ^uint64(0)
	if _, err := c.Seal(nil, nil, nil); err != ErrSequenceOverflow {
		t.Fatalf("got %v, want ErrSequenceOverflow", err)
	}
}

func TestUnsupportedAlgorithms(t *testing.T) {
	if _, err := NewKDF(9); err == nil {
		t.Fatal("KDF 9 accepted")
	}
	if _, err := LookupAEAD(9); err == nil {
		t.Fatal("AEAD 9 accepted")
	}
	if _, err := NewDHKEM(0x41); err == nil {
		t.Fatal("ML-KEM accepted as DHKEM")
	}
}

func BenchmarkStreamSeal16K(b *testing.B) {
	c, _ := NewContext(Suite{0x20, 1, 1}, make([]byte, 32), nil)
	buf := make([]byte, 16384+16)
	b.SetBytes(16384)
	for b.Loop() {
		if _, err := c.Seal(buf[:0], buf[:16384], nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHKDFMatchesStandardLibrary checks the HMAC-based HKDF against
// crypto/hkdf for every KDF and many lengths.
func TestHKDFMatchesStandardLibrary(t *testing.T) {
	for _, id := range []uint16{KDFHKDFSHA256, KDFHKDFSHA384, KDFHKDFSHA512} {
		k, _ := NewKDF(id)
		for _, n := range []int{0, 1, 31, 32, 33, 64, 65, 200} {
			salt := bytes.Repeat([]byte{byte(n)}, n%50)
			ikm := bytes.Repeat([]byte{0xab}, n)
			info := bytes.Repeat([]byte{0x5c}, n%17)
			prk := k.Extract(salt, ikm)
			want, err := hkdf.Extract(k.h, ikm, salt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(prk, want) {
				t.Fatalf("kdf %d: extract(%d) differs from crypto/hkdf", id, n)
			}
			for _, l := range []int{1, 12, 16, 32, 48, 64, 65, 100, 255 * k.nh} {
				// Two expansions with one call (one keyed HMAC), as the
				// response key and nonce are made.
				got, got2 := make([]byte, l), make([]byte, 16)
				if err := k.Expand(prk, Expansion{info, got}, Expansion{[]byte("nonce"), got2}); err != nil {
					t.Fatal(err)
				}
				want, err := hkdf.Expand(k.h, prk, string(info), l)
				if err != nil {
					t.Fatal(err)
				}
				want2, err := hkdf.Expand(k.h, prk, "nonce", 16)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) || !bytes.Equal(got2, want2) {
					t.Fatalf("kdf %d: expand(%d, %d) differs from crypto/hkdf", id, n, l)
				}
			}
			if err := k.Expand(prk, Expansion{info, make([]byte, 255*k.nh+1)}); err == nil {
				t.Fatal("expand beyond 255*Nh accepted")
			}
		}
	}
}

func TestContextAllocations(t *testing.T) {
	sc, err := NewSchedule(Suite{0x20, 1, 1}, []byte("info"))
	if err != nil {
		t.Fatal(err)
	}
	ss := make([]byte, 32)
	n := testing.AllocsPerRun(50, func() {
		c, err := sc.NewContext(ss)
		if err != nil {
			t.Fatal(err)
		}
		c.Export([]byte("ctx"), 16)
	})
	if n > 32 {
		t.Fatalf("a context and one export cost %v allocations", n)
	}
	t.Logf("%v allocations for a context and one export", n)
}
