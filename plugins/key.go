package plugins

import (
	"context"
	"crypto/ecdh"
	"fmt"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// Key is a private key served by a plugin: a handle, holding only the
// key's name and public key. It implements [kem.PrivateKey] and
// [kem.Exchanger], so twoway.NewRequestReceiverForKey takes it, and for
// P-256, P-384, P-521 and X25519 keys crypto/ecdh.KeyExchanger, so
// crypto/hpke.NewDHKEMPrivateKey takes it (for other KEMs Curve returns
// nil and ECDH fails). It is safe for concurrent use.
//
// Every operation is one call to a plugin process. Errors wrap
// [ErrUnavailable] when the process is gone (retry: the next call starts a
// new one), [kem.ErrInvalidPublicKey] for a malformed peer key, and the
// context's error when ctx ends first.
type Key struct {
	c     *Client
	info  KeyInfo
	curve ecdh.Curve // nil for X448 and KEMs that are not Diffie-Hellman based
	pub   *ecdh.PublicKey
}

func newKey(c *Client, info KeyInfo) *Key {
	k := &Key{c: c, info: info}
	if cv := info.KEM.Curve(); cv != nil {
		if pub, err := cv.NewPublicKey(info.PublicKey); err == nil {
			k.curve, k.pub = cv, pub
		}
	}
	return k
}

// Name returns the name the plugin serves the key under.
func (k *Key) Name() string { return k.info.Name }

// Backend returns the kind of store that holds the key ("soft", "pkcs11",
// "tpm2").
func (k *Key) Backend() string { return k.info.Backend }

// KEM returns the key's HPKE KEM (kem.PrivateKey, kem.Exchanger).
func (k *Key) KEM() kem.ID { return k.info.KEM }

// PublicKeyBytes returns the public key as HPKE's SerializePublicKey; the
// caller may modify the slice (kem.PrivateKey, kem.Exchanger).
func (k *Key) PublicKeyBytes() []byte { return append([]byte(nil), k.info.PublicKey...) }

// DecapsulateContext returns the KEM shared secret for enc
// (kem.PrivateKey). For a DHKEM the plugin performs only the
// Diffie-Hellman step (ECDH) and the key derivation runs here; other KEMs
// decapsulate in the plugin. The caller owns the result and should zero
// it.
func (k *Key) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	if k.info.KEM.IsDH() {
		return kem.DecapsulateDH(ctx, k, enc)
	}
	return k.remote(ctx, "decapsulate", frameDecapsulate, enc, "shared secret", k.info.KEM.SharedSecretSize())
}

// ECDHContext returns the raw Diffie-Hellman output with the peer's public
// key (kem.Exchanger), computed by the plugin. The peer key is validated
// there; the output is checked here to have the field's size and not be
// all zero. The caller owns the result and should zero it.
func (k *Key) ECDHContext(ctx context.Context, peer []byte) ([]byte, error) {
	id := k.info.KEM
	if !id.IsDH() {
		return nil, fmt.Errorf("plugins: key %s: %w: %v has no Diffie-Hellman step", k.info.Name, kem.ErrUnsupportedKEM, id)
	}
	dh, err := k.remote(ctx, "ecdh", frameECDH, peer, "DH output", id.DHSize())
	if err != nil {
		return nil, err
	}
	if err := kem.CheckDHOutput(id, dh); err != nil {
		clear(dh)
		return nil, fmt.Errorf("plugins: key %s: %w", k.info.Name, err)
	}
	return dh, nil
}

// remote makes a call of kind with payload to a plugin process and checks
// that its result has size bytes.
func (k *Key) remote(ctx context.Context, op string, kind byte, payload []byte, what string, size int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("plugins: key %s: %w", k.info.Name, err)
	}
	out, err := k.c.call(ctx, op, kind, k.info.Name, payload)
	if err != nil {
		return nil, fmt.Errorf("plugins: key %s: %w", k.info.Name, err)
	}
	if len(out) != size {
		clear(out)
		return nil, fmt.Errorf("plugins: key %s: the plugin returned %d bytes of %s, want %d", k.info.Name, len(out), what, size)
	}
	return out, nil
}

// PublicKey returns the public key (crypto/ecdh.KeyExchanger), or nil for
// X448 and KEMs that are not Diffie-Hellman based.
func (k *Key) PublicKey() *ecdh.PublicKey { return k.pub }

// Curve returns the key's curve (crypto/ecdh.KeyExchanger), or nil for X448
// and KEMs that are not Diffie-Hellman based.
func (k *Key) Curve() ecdh.Curve { return k.curve }

// ECDH implements crypto/ecdh.KeyExchanger: ECDHContext bounded by
// Config.CallTimeout.
func (k *Key) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if k.curve == nil {
		return nil, fmt.Errorf("plugins: key %s: %w: %v keys are not crypto/ecdh keys", k.info.Name, kem.ErrUnsupportedKEM, k.info.KEM)
	}
	if peer == nil || peer.Curve() != k.curve {
		return nil, fmt.Errorf("plugins: key %s: %w: peer key is not on the key's curve", k.info.Name, kem.ErrInvalidPublicKey)
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.c.cfg.CallTimeout)
	defer cancel()
	return k.ECDHContext(ctx, peer.Bytes())
}

// Compile-time checks of the interfaces a Key satisfies.
var (
	_ kem.PrivateKey    = (*Key)(nil)
	_ kem.Exchanger     = (*Key)(nil)
	_ ecdh.KeyExchanger = (*Key)(nil)
)
