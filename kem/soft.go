package kem

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"runtime"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/dh/x448"
	"github.com/cloudflare/circl/hpke"
)

// Software keys. They hold the private key in this process's memory, which
// is what the hardware backends of this module exist to avoid: use them for
// development, tests, and as the source of a migration to hardware.

// GenerateKey returns a new software private key for a KEM. The DHKEM keys
// it returns also implement Exchanger and, except for X448, Go's
// ecdh.KeyExchanger; ML-KEM keys implement crypto.Decapsulator.
func GenerateKey(id ID) (PrivateKey, error) {
	switch id {
	case DHKEMP256HKDFSHA256, DHKEMP384HKDFSHA384, DHKEMP521HKDFSHA512, DHKEMX25519HKDFSHA256:
		k, err := id.Curve().GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("kem: generate %v: %w", id, err)
		}
		return newECDHKey(id, k), nil
	case DHKEMX448HKDFSHA512:
		var sk x448.Key
		if _, err := rand.Read(sk[:]); err != nil {
			return nil, fmt.Errorf("kem: generate %v: %w", id, err)
		}
		return newX448Key(&sk), nil
	case MLKEM768:
		k, err := mlkem.GenerateKey768()
		if err != nil {
			return nil, fmt.Errorf("kem: generate %v: %w", id, err)
		}
		return newMLKEMKey(id, k), nil
	case MLKEM1024:
		k, err := mlkem.GenerateKey1024()
		if err != nil {
			return nil, fmt.Errorf("kem: generate %v: %w", id, err)
		}
		return newMLKEMKey(id, k), nil
	case XWing:
		_, sk, err := hpke.KEM_XWING.Scheme().GenerateKeyPair()
		if err != nil {
			return nil, fmt.Errorf("kem: generate %v: %w", id, err)
		}
		return FromCircl(sk)
	}
	return nil, fmt.Errorf("%w: %v", ErrUnsupportedKEM, id)
}

// NewPrivateKey returns the software private key for a KEM from its
// serialization (HPKE's SerializePrivateKey: the scalar for DHKEMs, the
// 64-byte seed for ML-KEM, the 32-byte seed for X-Wing).
func NewPrivateKey(id ID, b []byte) (PrivateKey, error) {
	switch id {
	case DHKEMP256HKDFSHA256, DHKEMP384HKDFSHA384, DHKEMP521HKDFSHA512, DHKEMX25519HKDFSHA256:
		k, err := id.Curve().NewPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("kem: %v private key: %w", id, err)
		}
		return newECDHKey(id, k), nil
	case DHKEMX448HKDFSHA512:
		if len(b) != x448.Size {
			return nil, fmt.Errorf("kem: %v private key of %d bytes, want %d", id, len(b), x448.Size)
		}
		var sk x448.Key
		copy(sk[:], b)
		return newX448Key(&sk), nil
	case MLKEM768:
		k, err := mlkem.NewDecapsulationKey768(b)
		if err != nil {
			return nil, fmt.Errorf("kem: %v private key: %w", id, err)
		}
		return newMLKEMKey(id, k), nil
	case MLKEM1024:
		k, err := mlkem.NewDecapsulationKey1024(b)
		if err != nil {
			return nil, fmt.Errorf("kem: %v private key: %w", id, err)
		}
		return newMLKEMKey(id, k), nil
	case XWing:
		sk, err := hpke.KEM_XWING.Scheme().UnmarshalBinaryPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("kem: %v private key: %w", id, err)
		}
		return FromCircl(sk)
	}
	return nil, fmt.Errorf("%w: %v", ErrUnsupportedKEM, id)
}

// MarshalPrivateKey returns the serialization of a software private key made
// by GenerateKey or NewPrivateKey, for writing a development key file.
// Hardware keys cannot be marshalled; asking is an error.
func MarshalPrivateKey(k PrivateKey) ([]byte, error) {
	switch k := k.(type) {
	case *ecdhKey:
		return k.k.Bytes(), nil
	case *x448Key:
		return append([]byte(nil), k.sk[:]...), nil
	case *mlkemKey:
		switch d := k.d.(type) {
		case *mlkem.DecapsulationKey768:
			return d.Bytes(), nil
		case *mlkem.DecapsulationKey1024:
			return d.Bytes(), nil
		}
	case *circlKey:
		return k.sk.MarshalBinary()
	}
	return nil, fmt.Errorf("kem: %T is not a software key; its private key cannot be exported", k)
}

// circlX25519 reports whether software X25519 keys exchange with circl's
// X25519 rather than crypto/ecdh's: on amd64, where circl's assembly takes
// about 0.7 of crypto/ecdh's time (BenchmarkX25519). Elsewhere circl runs
// generic code, not measured here, and crypto/ecdh stays.
const circlX25519 = runtime.GOARCH == "amd64"

// ecdhKey is a software DHKEM key on a crypto/ecdh curve. With circlX25519,
// an X25519 key also holds its scalar for circl's X25519, which its
// exchanges use: the same function (RFC 7748), held to crypto/ecdh's
// outputs and errors by TestX25519MatchesCryptoECDH.
type ecdhKey struct {
	id  ID
	k   *ecdh.PrivateKey
	x   *x25519.Key // X25519 keys with circlX25519 only
	pub []byte
}

func newECDHKey(id ID, k *ecdh.PrivateKey) *ecdhKey {
	e := &ecdhKey{id: id, k: k, pub: k.PublicKey().Bytes()}
	if circlX25519 && id == DHKEMX25519HKDFSHA256 {
		e.x = new(x25519.Key)
		copy(e.x[:], k.Bytes())
	}
	return e
}

func (k *ecdhKey) KEM() ID                    { return k.id }
func (k *ecdhKey) PublicKeyBytes() []byte     { return append([]byte(nil), k.pub...) }
func (k *ecdhKey) PublicKey() *ecdh.PublicKey { return k.k.PublicKey() }
func (k *ecdhKey) Curve() ecdh.Curve          { return k.k.Curve() }

func (k *ecdhKey) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if k.x == nil || peer.Curve() != k.k.Curve() {
		return k.k.ECDH(peer) // crypto/ecdh's own error for a curve mismatch
	}
	return k.x25519(peer.Bytes())
}

func (k *ecdhKey) ECDHContext(ctx context.Context, peer []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if k.x != nil {
		return k.x25519(peer)
	}
	p, err := k.k.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPublicKey, err)
	}
	z, err := k.k.ECDH(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPublicKey, err)
	}
	return z, nil
}

func (k *ecdhKey) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	return decapsulateDH(ctx, k, k.pub, enc)
}

// x25519 is the X25519 function of k's scalar and a peer's u-coordinate,
// with crypto/ecdh's checks: a peer of 32 bytes, and an error, wrapping
// ErrInvalidPublicKey, for a low-order peer (an all-zero output), which
// circl reports and which is checked again on the output in constant
// time.
func (k *ecdhKey) x25519(peer []byte) ([]byte, error) {
	if len(peer) != x25519.Size {
		return nil, fmt.Errorf("%w: X25519 public key of %d bytes, want %d", ErrInvalidPublicKey, len(peer), x25519.Size)
	}
	var p, z x25519.Key
	copy(p[:], peer)
	ok := x25519.Shared(&z, k.x, &p)
	var zero x25519.Key
	if !ok || subtle.ConstantTimeCompare(z[:], zero[:]) == 1 {
		clear(z[:])
		return nil, fmt.Errorf("%w: X25519 low-order point", ErrInvalidPublicKey)
	}
	out := make([]byte, x25519.Size)
	copy(out, z[:])
	clear(z[:])
	return out, nil
}

// x448Key is a software DHKEM(X448) key (circl), as crypto/ecdh has no X448.
type x448Key struct {
	sk  x448.Key
	pub []byte
}

func newX448Key(sk *x448.Key) *x448Key {
	var pub x448.Key
	x448.KeyGen(&pub, sk)
	return &x448Key{sk: *sk, pub: pub[:]}
}

func (k *x448Key) KEM() ID                { return DHKEMX448HKDFSHA512 }
func (k *x448Key) PublicKeyBytes() []byte { return append([]byte(nil), k.pub...) }

func (k *x448Key) ECDHContext(ctx context.Context, peer []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(peer) != x448.Size {
		return nil, fmt.Errorf("%w: X448 public key of %d bytes", ErrInvalidPublicKey, len(peer))
	}
	var p, z x448.Key
	copy(p[:], peer)
	if !x448.Shared(&z, &k.sk, &p) {
		return nil, fmt.Errorf("%w: X448 low-order point", ErrInvalidPublicKey)
	}
	return z[:], nil
}

func (k *x448Key) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	return decapsulateDH(ctx, k, k.pub, enc)
}

// mlkemKey is a software ML-KEM key; it is also a crypto.Decapsulator.
type mlkemKey struct{ decapsulator }

// newMLKEMKey returns the software key of a crypto/mlkem decapsulation key.
func newMLKEMKey(id ID, d crypto.Decapsulator) *mlkemKey {
	return &mlkemKey{decapsulator{d: d, id: id, pub: d.Encapsulator().Bytes()}}
}

func (k *mlkemKey) Encapsulator() crypto.Encapsulator { return k.d.Encapsulator() }

func (k *mlkemKey) Decapsulate(ciphertext []byte) ([]byte, error) { return k.d.Decapsulate(ciphertext) }
