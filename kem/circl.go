package kem

import (
	"context"
	"fmt"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/kem/xwing"
)

// circlKey is a PrivateKey backed by a circl HPKE KEM private key.
type circlKey struct {
	id     ID
	scheme circlkem.Scheme
	sk     circlkem.PrivateKey
	pub    []byte
}

// FromCircl returns a PrivateKey for a circl private key of one of the KEMs
// of circl's hpke package (from hpke.KEM.Scheme()). Decapsulation runs in
// circl; the key is a software key held in this process.
func FromCircl(sk circlkem.PrivateKey) (PrivateKey, error) {
	if sk == nil {
		return nil, fmt.Errorf("kem: nil circl private key")
	}
	id, err := circlID(sk.Scheme())
	if err != nil {
		return nil, err
	}
	pub, err := sk.Public().MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("kem: circl public key: %w", err)
	}
	// circlID returns only KEMs of circl's hpke package, whose scheme
	// decapsulates for the keys of wrapped schemes too.
	return &circlKey{id: id, scheme: hpke.KEM(id).Scheme(), sk: sk, pub: pub}, nil
}

var circlKEMs = []hpke.KEM{
	hpke.KEM_P256_HKDF_SHA256, hpke.KEM_P384_HKDF_SHA384, hpke.KEM_P521_HKDF_SHA512,
	hpke.KEM_X25519_HKDF_SHA256, hpke.KEM_X448_HKDF_SHA512,
	hpke.KEM_X25519_KYBER768_DRAFT00, hpke.KEM_XWING,
}

// circlID maps a circl scheme to its HPKE KEM identifier.
func circlID(s circlkem.Scheme) (ID, error) {
	if s == nil {
		return 0, fmt.Errorf("kem: nil circl scheme")
	}
	for _, k := range circlKEMs {
		if k.Scheme().Name() == s.Name() {
			return ID(k), nil
		}
	}
	// circl's hpke wraps some schemes, whose keys report the inner scheme.
	if s.Name() == xwing.Scheme().Name() {
		return XWing, nil
	}
	return 0, fmt.Errorf("%w: circl scheme %q is not an HPKE KEM", ErrUnsupportedKEM, s.Name())
}

func (k *circlKey) KEM() ID                { return k.id }
func (k *circlKey) PublicKeyBytes() []byte { return append([]byte(nil), k.pub...) }

func (k *circlKey) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kem: decapsulate: %w", err)
	}
	if len(enc) != k.scheme.CiphertextSize() {
		return nil, fmt.Errorf("%w: encapsulated key of %d bytes, %v needs %d", ErrInvalidPublicKey, len(enc), k.id, k.scheme.CiphertextSize())
	}
	ss, err := k.scheme.Decapsulate(k.sk, enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %v", ErrInvalidPublicKey, k.id, err)
	}
	return ss, nil
}
