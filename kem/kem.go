// Package kem names what an HPKE receiver needs from its private key, and
// nothing more: the KEM the key serves, its public key, and decapsulation.
//
// A twoway receiver consumes a [PrivateKey]. The key may sit in memory, in a
// PKCS#11 token, in a TPM, or behind a plugin process: the receiver cannot
// tell and never sees the private key bytes. Everything that can block or
// fail remotely takes a [context.Context].
//
// Diffie-Hellman keys (P-256, P-384, P-521, X25519, X448) are usually
// implemented as an [Exchanger], which performs only the Diffie-Hellman step;
// [DHKEM] turns an Exchanger into a PrivateKey by adding the DHKEM key
// derivation of RFC 9180 section 4.1 around it. Keys that live in hardware
// also implement Go's [crypto/ecdh.KeyExchanger] (or [crypto.Decapsulator]
// for ML-KEM), so the standard library's crypto/hpke accepts them as well.
package kem

import (
	"context"
	"errors"
	"fmt"
)

// ID is an HPKE KEM identifier, from the IANA "HPKE KEM Identifiers" registry
// (RFC 9180 section 7.1 and draft-ietf-hpke-pq).
type ID uint16

// The KEMs this module knows.
const (
	DHKEMP256HKDFSHA256   ID = 0x0010 // DHKEM(P-256, HKDF-SHA256)
	DHKEMP384HKDFSHA384   ID = 0x0011 // DHKEM(P-384, HKDF-SHA384)
	DHKEMP521HKDFSHA512   ID = 0x0012 // DHKEM(P-521, HKDF-SHA512)
	DHKEMX25519HKDFSHA256 ID = 0x0020 // DHKEM(X25519, HKDF-SHA256)
	DHKEMX448HKDFSHA512   ID = 0x0021 // DHKEM(X448, HKDF-SHA512)
	MLKEM768              ID = 0x0041 // ML-KEM-768 (draft-ietf-hpke-pq)
	MLKEM1024             ID = 0x0042 // ML-KEM-1024 (draft-ietf-hpke-pq)
	XWing                 ID = 0x647a // MLKEM768-X25519, a.k.a. X-Wing (draft-ietf-hpke-pq)
)

// ErrUnsupportedKEM is returned (wrapped) for a KEM identifier this module
// does not implement.
var ErrUnsupportedKEM = errors.New("kem: unsupported KEM")

// ErrInvalidPublicKey is returned (wrapped) when a peer's public key or an
// encapsulated key is malformed, off the curve, of low order, or of the wrong
// length. It is never a reason to retry.
var ErrInvalidPublicKey = errors.New("kem: invalid public key")

// PrivateKey is the receiving half of a KEM key pair as a twoway receiver
// consumes it. Implementations must be safe for concurrent use.
//
// PrivateKey deliberately has no method that returns private key material.
type PrivateKey interface {
	// KEM reports the HPKE KEM this key belongs to.
	KEM() ID
	// PublicKeyBytes returns the public key serialized as HPKE's
	// SerializePublicKey (RFC 9180 section 7.1.1): the uncompressed SEC1
	// point for the NIST curves, the raw u-coordinate for X25519 and X448,
	// the encapsulation key for ML-KEM and its hybrids.
	PublicKeyBytes() []byte
	// DecapsulateContext returns the KEM shared secret for the encapsulated
	// key enc (RFC 9180 section 4, Decap). The caller owns the returned slice
	// and should zero it when done. A malformed enc yields an error wrapping
	// ErrInvalidPublicKey; a cancelled ctx yields an error wrapping
	// ctx.Err().
	DecapsulateContext(ctx context.Context, enc []byte) (sharedSecret []byte, err error)
}

// Exchanger is a Diffie-Hellman private key that performs the DH step of a
// DHKEM without revealing its scalar: the context-aware counterpart of
// [crypto/ecdh.KeyExchanger], extended to curves crypto/ecdh lacks (X448).
// Implementations must be safe for concurrent use.
type Exchanger interface {
	// KEM reports the DHKEM this key belongs to; it is one of the DHKEM IDs.
	KEM() ID
	// PublicKeyBytes returns the public key serialized as HPKE's
	// SerializePublicKey.
	PublicKeyBytes() []byte
	// ECDHContext returns the raw Diffie-Hellman output with the peer's
	// public key, serialized as SerializePublicKey: the x-coordinate of the
	// shared point, left-padded to the field size, for the NIST curves; the
	// shared u-coordinate for X25519 and X448. It fails (wrapping
	// ErrInvalidPublicKey) for an off-curve or low-order peer and never
	// returns an all-zero secret.
	ECDHContext(ctx context.Context, peer []byte) ([]byte, error)
}

// String returns the registry name of the KEM.
func (id ID) String() string {
	switch id {
	case DHKEMP256HKDFSHA256:
		return "DHKEM(P-256, HKDF-SHA256)"
	case DHKEMP384HKDFSHA384:
		return "DHKEM(P-384, HKDF-SHA384)"
	case DHKEMP521HKDFSHA512:
		return "DHKEM(P-521, HKDF-SHA512)"
	case DHKEMX25519HKDFSHA256:
		return "DHKEM(X25519, HKDF-SHA256)"
	case DHKEMX448HKDFSHA512:
		return "DHKEM(X448, HKDF-SHA512)"
	case MLKEM768:
		return "ML-KEM-768"
	case MLKEM1024:
		return "ML-KEM-1024"
	case XWing:
		return "MLKEM768-X25519"
	default:
		return fmt.Sprintf("KEM(0x%04x)", uint16(id))
	}
}

// IsDH reports whether id is one of the Diffie-Hellman based KEMs.
func (id ID) IsDH() bool { return id.DHSize() > 0 }

// sizes holds Nsecret, Nenc, Npk and Nsk of RFC 9180 section 7.1, and the
// size of the DH output (Ndh) for DHKEMs.
type sizes struct{ secret, enc, pk, sk, dh int }

func (id ID) sizes() (sizes, bool) {
	switch id {
	case DHKEMP256HKDFSHA256:
		return sizes{32, 65, 65, 32, 32}, true
	case DHKEMP384HKDFSHA384:
		return sizes{48, 97, 97, 48, 48}, true
	case DHKEMP521HKDFSHA512:
		return sizes{64, 133, 133, 66, 66}, true
	case DHKEMX25519HKDFSHA256:
		return sizes{32, 32, 32, 32, 32}, true
	case DHKEMX448HKDFSHA512:
		return sizes{64, 56, 56, 56, 56}, true
	case MLKEM768:
		return sizes{32, 1088, 1184, 64, 0}, true
	case MLKEM1024:
		return sizes{32, 1568, 1568, 64, 0}, true
	case XWing:
		return sizes{32, 1120, 1216, 32, 0}, true
	}
	return sizes{}, false
}

// Supported reports whether this module implements the KEM.
func (id ID) Supported() bool { _, ok := id.sizes(); return ok }

// EncapsulatedKeySize returns Nenc, the length of an encapsulated key, or 0
// for an unsupported KEM.
func (id ID) EncapsulatedKeySize() int { s, _ := id.sizes(); return s.enc }

// PublicKeySize returns Npk, the length of a serialized public key, or 0 for
// an unsupported KEM.
func (id ID) PublicKeySize() int { s, _ := id.sizes(); return s.pk }

// SharedSecretSize returns Nsecret, the length of the KEM shared secret, or 0
// for an unsupported KEM.
func (id ID) SharedSecretSize() int { s, _ := id.sizes(); return s.secret }

// DHSize returns Ndh, the length of the raw Diffie-Hellman output of a DHKEM
// (the field size), or 0 for a KEM that is not Diffie-Hellman based.
func (id ID) DHSize() int { s, _ := id.sizes(); return s.dh }
