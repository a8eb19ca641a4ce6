package kem

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/mlkem"
	"fmt"

	circlkem "github.com/cloudflare/circl/kem"
)

// From returns the PrivateKey for any key this module can decapsulate with:
// a PrivateKey (returned as is), an Exchanger, a crypto/ecdh.KeyExchanger
// (including *ecdh.PrivateKey and hardware keys), a crypto.Decapsulator for
// ML-KEM-768 or ML-KEM-1024 (including *mlkem.DecapsulationKey768), or a
// circl private key.
func From(key any) (PrivateKey, error) {
	switch k := key.(type) {
	case nil:
		return nil, fmt.Errorf("kem: nil key")
	case PrivateKey:
		return k, nil
	case Exchanger:
		return DHKEM(k)
	case ecdh.KeyExchanger:
		return FromKeyExchanger(k)
	case crypto.Decapsulator:
		return FromDecapsulator(k)
	case circlkem.PrivateKey:
		return FromCircl(k)
	}
	return nil, fmt.Errorf("%w: %T is not a private key this module can use", ErrUnsupportedKEM, key)
}

// FromKeyExchanger returns the DHKEM PrivateKey of a crypto/ecdh key
// exchanger: an *ecdh.PrivateKey, or an opaque key such as one kept in a
// hardware module. If k also implements Exchanger, its context-aware
// ECDHContext is used. Otherwise ECDH runs without a context: when the
// caller's context ends first, decapsulation returns at once with its error
// and the pending ECDH result is discarded.
func FromKeyExchanger(k ecdh.KeyExchanger) (PrivateKey, error) {
	if k == nil {
		return nil, fmt.Errorf("kem: nil key exchanger")
	}
	if x, ok := k.(Exchanger); ok {
		return DHKEM(x)
	}
	id, err := IDForCurve(k.Curve())
	if err != nil {
		return nil, err
	}
	pub := k.PublicKey()
	if pub == nil {
		return nil, fmt.Errorf("kem: key exchanger has no public key")
	}
	return DHKEM(&keyExchanger{k: k, id: id, pub: pub.Bytes()})
}

// keyExchanger adapts an ecdh.KeyExchanger to Exchanger.
type keyExchanger struct {
	k   ecdh.KeyExchanger
	id  ID
	pub []byte
}

func (x *keyExchanger) KEM() ID                { return x.id }
func (x *keyExchanger) PublicKeyBytes() []byte { return append([]byte(nil), x.pub...) }

func (x *keyExchanger) ECDHContext(ctx context.Context, peer []byte) ([]byte, error) {
	pub, err := x.k.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPublicKey, err)
	}
	if _, soft := x.k.(*ecdh.PrivateKey); soft || ctx.Done() == nil {
		return x.k.ECDH(pub)
	}
	type result struct {
		z   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		z, err := x.k.ECDH(pub)
		ch <- result{z, err}
	}()
	select {
	case r := <-ch:
		return r.z, r.err
	case <-ctx.Done():
		go func() { clear((<-ch).z) }()
		return nil, ctx.Err()
	}
}

// FromDecapsulator returns the PrivateKey of ML-KEM-768 or ML-KEM-1024 (as
// HPKE KEMs, draft-ietf-hpke-pq) for a crypto.Decapsulator: an
// *mlkem.DecapsulationKey768 or *mlkem.DecapsulationKey1024, or an opaque
// key whose Encapsulator is one of their encapsulation keys or has their
// length.
func FromDecapsulator(d crypto.Decapsulator) (PrivateKey, error) {
	if d == nil {
		return nil, fmt.Errorf("kem: nil decapsulator")
	}
	e := d.Encapsulator()
	if e == nil {
		return nil, fmt.Errorf("kem: decapsulator has no encapsulation key")
	}
	var id ID
	switch e.(type) {
	case *mlkem.EncapsulationKey768:
		id = MLKEM768
	case *mlkem.EncapsulationKey1024:
		id = MLKEM1024
	default:
		switch len(e.Bytes()) {
		case MLKEM768.PublicKeySize():
			id = MLKEM768
		case MLKEM1024.PublicKeySize():
			id = MLKEM1024
		default:
			return nil, fmt.Errorf("%w: encapsulation key of %d bytes is not ML-KEM-768 or ML-KEM-1024", ErrUnsupportedKEM, len(e.Bytes()))
		}
	}
	return &decapsulator{d: d, id: id, pub: e.Bytes()}, nil
}

// decapsulator is the PrivateKey of an ML-KEM crypto.Decapsulator; as an
// HPKE KEM, ML-KEM's shared secret is the KEM's own.
type decapsulator struct {
	d   crypto.Decapsulator
	id  ID
	pub []byte
}

func (k *decapsulator) KEM() ID                { return k.id }
func (k *decapsulator) PublicKeyBytes() []byte { return append([]byte(nil), k.pub...) }

func (k *decapsulator) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kem: decapsulate: %w", err)
	}
	if len(enc) != k.id.EncapsulatedKeySize() {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes, %v needs %d", ErrInvalidPublicKey, len(enc), k.id, k.id.EncapsulatedKeySize())
	}
	ss, err := k.d.Decapsulate(enc)
	if err != nil {
		return nil, fmt.Errorf("kem: %v: decapsulate: %w", k.id, err)
	}
	return ss, nil
}
