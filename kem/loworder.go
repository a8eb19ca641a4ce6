package kem

import (
	"bytes"
	"math/big"
)

// IsLowOrderPoint reports whether u, a public key of the DHKEM id, encodes
// a point of small order on the curve of X25519 or X448 or on its twist
// (RFC 7748): for exactly these, X25519 and X448 give an all-zero output
// whatever the scalar, which a receiver must refuse (RFC 9180 section
// 7.1.4). For X25519 the top bit is ignored, as RFC 7748 says, and the
// non-canonical encodings u + p that fit count too. It is false for every
// other KEM and for a u of the wrong length. u is a public value; the
// comparison need not be constant-time.
func IsLowOrderPoint(id ID, u []byte) bool {
	var table [][]byte
	switch id {
	case DHKEMX25519HKDFSHA256:
		table = lowOrderX25519
	case DHKEMX448HKDFSHA512:
		table = lowOrderX448
	default:
		return false
	}
	if len(u) != id.PublicKeySize() {
		return false
	}
	n := len(u) - 1
	last := u[n]
	if id == DHKEMX25519HKDFSHA256 {
		last &= 0x7f
	}
	for _, lo := range table {
		if last == lo[n] && bytes.Equal(u[:n], lo[:n]) {
			return true
		}
	}
	return false
}

// The little-endian encodings of the u-coordinates of small order, with
// their non-canonical encodings u + p that fit in the encoding.
var (
	lowOrderX25519 = lowOrderPoints(
		new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19)), // p = 2^255 - 19
		32, 255,
		// The two u-coordinates of the points of order 8 on Curve25519.
		"325606250916557431795983626356110631294008115727848805560023387167927233504",
		"39382357235489614581723060781553021112529911719440698176882885853963445705823",
	)
	lowOrderX448 = lowOrderPoints(
		new(big.Int).Sub(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 448), new(big.Int).Lsh(big.NewInt(1), 224)), big.NewInt(1)), // p = 2^448 - 2^224 - 1
		56, 448,
	)
)

// lowOrderPoints lists, for a Montgomery curve over p with size-byte
// encodings of which bits are used, the u-coordinates 0 (order 2 on the
// curve, 4 on the twist), 1 (order 4), p - 1 (order 4 on the twist) and
// those of extra (decimal), and each plus p where it fits in bits.
func lowOrderPoints(p *big.Int, size, bits int, extra ...string) [][]byte {
	one := big.NewInt(1)
	vals := []*big.Int{big.NewInt(0), big.NewInt(1), new(big.Int).Sub(p, one)}
	for _, s := range extra {
		v, ok := new(big.Int).SetString(s, 10)
		if !ok {
			panic("kem: bad small-order constant " + s)
		}
		vals = append(vals, v)
	}
	limit := new(big.Int).Lsh(one, uint(bits))
	var out [][]byte
	for _, v := range vals {
		for _, w := range []*big.Int{v, new(big.Int).Add(v, p)} {
			if w.Cmp(limit) >= 0 {
				continue
			}
			le := w.FillBytes(make([]byte, size))
			for i, j := 0, size-1; i < j; i, j = i+1, j-1 {
				le[i], le[j] = le[j], le[i]
			}
			out = append(out, le)
		}
	}
	return out
}
