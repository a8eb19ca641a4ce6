package pkcs11

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// deriveTemplate is the template of the short-lived secret CKM_ECDH1_DERIVE
// produces: a session object whose value can be read, as long as the field.
func deriveTemplate(cv *curve) []*p11.Attribute {
	return []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_SENSITIVE, false),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
		p11.NewAttribute(p11.CKA_VALUE_LEN, cv.size),
	}
}

// ECDHContext performs the Diffie-Hellman step on the token
// (CKM_ECDH1_DERIVE with CKD_NULL) and returns the raw shared secret: the
// x-coordinate left-padded to the field size (32, 48, 66 bytes for P-256,
// P-384, P-521) or the 32/56-byte u-coordinate for X25519/X448. It
// implements [kem.Exchanger].
//
// peer is the serialized public key (uncompressed SEC1 point, or
// u-coordinate), optionally DER-wrapped in an OCTET STRING as tokens store
// CKA_EC_POINT. It is validated before the token sees it: a wrong length,
// an off-curve point or the identity (NIST curves), or a small-order point
// (X25519/X448) fails with an error wrapping [kem.ErrInvalidPublicKey]; so
// does an all-zero result. The secret never comes back all zero.
//
// The derived object lives only in a session and is destroyed on every
// path. The caller owns the returned slice and should zero it after use.
//
// ctx bounds the wait for a pooled session and the recovery retries. A
// PKCS#11 call already inside the module cannot be interrupted: by default
// the exchange runs on the caller's goroutine and returns when that call
// does. With [WithAbandonOnCancel] it runs on a goroutine of its own and
// ECDHContext returns as soon as ctx ends; the abandoned call completes in
// the background and its result is zeroed and discarded.
func (k *Key) ECDHContext(ctx context.Context, peer []byte) ([]byte, error) {
	raw, err := k.curve.peerPoint(peer)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: derive: %w", err)
	}
	if ctx.Done() == nil || !k.tok.o.abandon {
		return k.derive(ctx, raw)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pkcs11: derive: %w", err)
	}
	raw = bytes.Clone(raw) // the caller may reuse peer once we return
	// Run the exchange on its own goroutine so that the caller can leave
	// when ctx ends; the handshake on state decides who zeroes the secret.
	const (
		running = iota
		delivered
		abandoned
	)
	var state atomic.Int32
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := k.derive(ctx, raw)
		if !state.CompareAndSwap(running, delivered) {
			clear(b)
			return
		}
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		if state.CompareAndSwap(running, abandoned) {
			return nil, fmt.Errorf("pkcs11: derive: %w", ctx.Err())
		}
		r := <-ch
		return r.b, r.err
	}
}

// DecapsulateContext implements kem.PrivateKey: DHKEM's Decap with the
// Diffie-Hellman step done on the token by ECDHContext, so that twoway
// receivers (twoway.NewRequestReceiverForKey) use the key directly. The
// caller owns the shared secret and should zero it after use.
func (k *Key) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	return kem.DecapsulateDH(ctx, k, enc)
}

// ECDH performs the exchange with a crypto/ecdh public key, under a
// context with the Token's timeout ([WithTimeout], 30s by default; see
// ECDHContext for what a context bounds). It implements
// [ecdh.KeyExchanger]; the result is as for [Key.ECDHContext]. X448 keys
// have no crypto/ecdh curve and always fail here: use ECDHContext.
func (k *Key) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if k.curve.ecdh == nil {
		return nil, fmt.Errorf("pkcs11: derive: %w: crypto/ecdh has no %s; use ECDHContext", ErrUnsupportedKeyType, k.curve.name)
	}
	if peer == nil {
		return nil, fmt.Errorf("pkcs11: derive: %w: nil public key", kem.ErrInvalidPublicKey)
	}
	if peer.Curve() != k.curve.ecdh {
		return nil, fmt.Errorf("pkcs11: derive: %w: peer key is on %v, this key on %s", kem.ErrInvalidPublicKey, peer.Curve(), k.curve.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.tok.o.timeout)
	defer cancel()
	return k.ECDHContext(ctx, peer.Bytes())
}

// derive runs the exchange through the Token's pool, with recovery.
func (k *Key) derive(ctx context.Context, peer []byte) ([]byte, error) {
	var out []byte
	err := k.tok.do(ctx, "derive", func(s *session) error {
		h, err := k.handle(s)
		if err != nil {
			return err
		}
		out, err = k.deriveOnce(s, h, peer)
		if classify(err) == recoverHandle {
			k.cache.Store(nil)
		}
		return err
	})
	if err != nil {
		if errors.Is(err, kem.ErrInvalidPublicKey) || errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("pkcs11: derive: %w", err)
		}
		return nil, fmt.Errorf("pkcs11: derive with key %s on token %q: %w", k.findRef, k.tok.info.Label, err)
	}
	return out, nil
}

// deriveOnce is C_DeriveKey + C_GetAttributeValue(CKA_VALUE) +
// C_DestroyObject on one session. The peer point goes raw into
// CK_ECDH1_DERIVE_PARAMS; a token that refuses that gets it DER-wrapped,
// and keeps getting it so.
func (k *Key) deriveOnce(s *session, h p11.ObjectHandle, peer []byte) ([]byte, error) {
	c := k.tok.ctx()
	wrapped := k.tok.peerWrapped.Load()
	data := peer
	if wrapped {
		data = wrapOctetString(peer)
	}
	obj, err := c.DeriveKey(s.h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDH1_DERIVE, p11.NewECDH1DeriveParams(p11.CKD_NULL, nil, data))}, h, k.curve.deriveTmpl)
	if err != nil && !wrapped && refusesRawPoint(err) {
		obj, err = c.DeriveKey(s.h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDH1_DERIVE, p11.NewECDH1DeriveParams(p11.CKD_NULL, nil, wrapOctetString(peer)))}, h, k.curve.deriveTmpl)
		if err == nil {
			k.tok.peerWrapped.Store(true)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("C_DeriveKey(CKM_ECDH1_DERIVE): %w", err)
	}
	defer c.DestroyObject(s.h, obj)
	a, err := c.GetAttributeValue(s.h, obj, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
	if err != nil {
		return nil, fmt.Errorf("C_GetAttributeValue(CKA_VALUE) of the derived secret: %w", err)
	}
	return k.curve.normalizeSecret(a[0].Value)
}

// refusesRawPoint reports whether a C_DeriveKey failure looks like a token
// that wants the peer point DER-wrapped.
func refusesRawPoint(err error) bool {
	switch ckr(err) {
	case p11.CKR_MECHANISM_PARAM_INVALID, p11.CKR_ARGUMENTS_BAD, p11.CKR_DOMAIN_PARAMS_INVALID, p11.CKR_ATTRIBUTE_VALUE_INVALID:
		return true
	}
	return false
}

// Compile-time checks of the interfaces a Key implements.
var (
	_ kem.Exchanger     = (*Key)(nil)
	_ ecdh.KeyExchanger = (*Key)(nil)
)
