package kem

import (
	"context"
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"

	"github.com/twoway-hsm/twoway-hsm/internal/keyschedule"
)

// DHKEM returns the PrivateKey of DHKEM(curve, HKDF) (RFC 9180 section 4.1)
// around x: decapsulation asks x for the Diffie-Hellman step and derives the
// shared secret from its output, so the private scalar stays wherever x
// keeps it. x must serve one of the DHKEM IDs.
func DHKEM(x Exchanger) (PrivateKey, error) {
	if x == nil {
		return nil, fmt.Errorf("kem: nil exchanger")
	}
	if _, err := keyschedule.NewDHKEM(uint16(x.KEM())); err != nil {
		return nil, fmt.Errorf("%w: %v is not a Diffie-Hellman KEM", ErrUnsupportedKEM, x.KEM())
	}
	pub := x.PublicKeyBytes()
	if err := CheckPublicKey(x.KEM(), pub); err != nil {
		return nil, fmt.Errorf("kem: the exchanger's own public key: %w", err)
	}
	return &dhkem{x: x, pub: pub}, nil
}

type dhkem struct {
	x   Exchanger
	pub []byte
}

func (k *dhkem) KEM() ID                { return k.x.KEM() }
func (k *dhkem) PublicKeyBytes() []byte { return append([]byte(nil), k.pub...) }

func (k *dhkem) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	return decapsulateDH(ctx, k.x, k.pub, enc)
}

// DecapsulateDH is DHKEM's Decap (RFC 9180 section 4.1) with the
// Diffie-Hellman step done by x: it validates enc as a public key of x's
// curve, calls x.ECDHContext, and derives the shared secret. Backends use
// it to implement PrivateKey.DecapsulateContext.
func DecapsulateDH(ctx context.Context, x Exchanger, enc []byte) ([]byte, error) {
	return decapsulateDH(ctx, x, x.PublicKeyBytes(), enc)
}

func decapsulateDH(ctx context.Context, x Exchanger, pkR, enc []byte) ([]byte, error) {
	id := x.KEM()
	d, err := keyschedule.NewDHKEM(uint16(id))
	if err != nil {
		return nil, fmt.Errorf("%w: %v is not a Diffie-Hellman KEM", ErrUnsupportedKEM, id)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kem: decapsulate: %w", err)
	}
	if err := CheckPublicKey(id, enc); err != nil {
		return nil, fmt.Errorf("kem: encapsulated key: %w", err)
	}
	dh, err := x.ECDHContext(ctx, enc)
	if err != nil {
		return nil, fmt.Errorf("kem: %v: ecdh: %w", id, err)
	}
	defer clear(dh)
	if err := CheckDHOutput(id, dh); err != nil {
		return nil, fmt.Errorf("kem: %w", err)
	}
	return d.SharedSecret(dh, enc, pkR)
}

// CheckDHOutput checks a raw Diffie-Hellman output of the DHKEM id, as an
// Exchanger returns it: it must be id.DHSize() bytes and not all zero (an
// all-zero output means a low-order peer point, and the error then wraps
// ErrInvalidPublicKey). The zero check takes time independent of the
// contents and allocates nothing; backends and the plugin host run it on
// every exchange.
func CheckDHOutput(id ID, dh []byte) error {
	if len(dh) != id.DHSize() {
		return fmt.Errorf("%v: Diffie-Hellman output of %d bytes, want %d", id, len(dh), id.DHSize())
	}
	var acc byte
	for _, x := range dh {
		acc |= x
	}
	if subtle.ConstantTimeByteEq(acc, 0) == 1 {
		return fmt.Errorf("%w: %v: all-zero Diffie-Hellman output (low-order point)", ErrInvalidPublicKey, id)
	}
	return nil
}

// Curve returns the crypto/ecdh curve of a DHKEM, or nil for X448, which
// crypto/ecdh lacks, and the KEMs that are not Diffie-Hellman based.
func (id ID) Curve() ecdh.Curve {
	switch id {
	case DHKEMP256HKDFSHA256:
		return ecdh.P256()
	case DHKEMP384HKDFSHA384:
		return ecdh.P384()
	case DHKEMP521HKDFSHA512:
		return ecdh.P521()
	case DHKEMX25519HKDFSHA256:
		return ecdh.X25519()
	}
	return nil
}

// IDForCurve returns the DHKEM that uses a crypto/ecdh curve.
func IDForCurve(c ecdh.Curve) (ID, error) {
	switch c {
	case ecdh.P256():
		return DHKEMP256HKDFSHA256, nil
	case ecdh.P384():
		return DHKEMP384HKDFSHA384, nil
	case ecdh.P521():
		return DHKEMP521HKDFSHA512, nil
	case ecdh.X25519():
		return DHKEMX25519HKDFSHA256, nil
	}
	return 0, fmt.Errorf("%w: curve %v", ErrUnsupportedKEM, c)
}

// CheckPublicKey reports whether b is a valid serialized public key (or
// DHKEM encapsulated key) of the KEM: the right length, for the NIST
// curves an uncompressed point on the curve that is not the identity, and
// for X25519 and X448 not a point of small order (IsLowOrderPoint). The
// error wraps ErrInvalidPublicKey.
func CheckPublicKey(id ID, b []byte) error {
	if !id.Supported() {
		return fmt.Errorf("%w: %v", ErrUnsupportedKEM, id)
	}
	if len(b) != id.PublicKeySize() {
		return fmt.Errorf("%w: %d bytes, %v needs %d", ErrInvalidPublicKey, len(b), id, id.PublicKeySize())
	}
	if c := id.Curve(); c != nil {
		if _, err := c.NewPublicKey(b); err != nil {
			return fmt.Errorf("%w: not a point of %v: %v", ErrInvalidPublicKey, id, err)
		}
	}
	if IsLowOrderPoint(id, b) {
		return fmt.Errorf("%w: a point of small order on %v's curve", ErrInvalidPublicKey, id)
	}
	return nil
}
