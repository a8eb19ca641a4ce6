package tpm2

import (
	"context"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"fmt"

	gotpm "github.com/google/go-tpm/tpm2"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// ECDHContext performs ECDH with the peer's public key, given as an
// uncompressed SEC1 point, inside the TPM (TPM2_ECDH_ZGen) and returns the
// X coordinate of the shared point, left-padded to the field size (32, 48
// or 66 bytes): the Diffie-Hellman output of RFC 9180's DHKEM.
//
// The command runs in the connection's salted HMAC session with response
// encryption (AES-128-CFB), so the shared point is never on the TPM bus in
// the clear, and the key's auth value never crosses it at all. A peer
// point that is malformed, off the curve or the point at infinity yields an
// error wrapping [kem.ErrInvalidPublicKey]. ctx bounds the wait for the
// TPM; a command already sent is allowed to finish. The caller owns the
// result and should zero it after use.
func (k *Key) ECDHContext(ctx context.Context, peer []byte) ([]byte, error) {
	if err := kem.CheckPublicKey(k.kemID, peer); err != nil {
		return nil, fmt.Errorf("tpm2: ecdh: %w", err)
	}
	return k.ecdh(ctx, peer)
}

// DecapsulateContext implements kem.PrivateKey: DHKEM's Decap with the
// Diffie-Hellman step done in the TPM by ECDHContext, so that twoway
// receivers (twoway.NewRequestReceiverForKey) use the key directly. The
// caller owns the shared secret and should zero it after use.
func (k *Key) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	return kem.DecapsulateDH(ctx, k, enc)
}

// ECDH implements crypto/ecdh.KeyExchanger: ECDHContext bounded by the
// key's default timeout (WithTimeout, default [DefaultTimeout]).
func (k *Key) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if peer == nil || peer.Curve() != k.Curve() {
		return nil, fmt.Errorf("tpm2: ecdh: %w: peer key is not on %v", kem.ErrInvalidPublicKey, k.Curve())
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	return k.ecdh(ctx, peer.Bytes()) // an ecdh.PublicKey is a valid point
}

// ecdh runs TPM2_ECDH_ZGen with peer, an uncompressed point of the key's
// curve that is not validated here, and returns the padded X coordinate of
// the result.
func (k *Key) ecdh(ctx context.Context, peer []byte) ([]byte, error) {
	if k.closed.Load() {
		return nil, fmt.Errorf("tpm2: ecdh: %w", ErrClosed)
	}
	size := k.kemID.DHSize()
	out := make([]byte, size)
	c := k.c
	err := c.do(ctx, func() error {
		if k.closed.Load() {
			return ErrClosed
		}
		h, s, err := c.authorize(k)
		if err != nil {
			return err
		}
		s.use(k.auth, false, true)
		defer s.clearCaptured()
		_, err = gotpm.ECDHZGen{
			KeyHandle: gotpm.AuthHandle{Handle: h, Name: k.name, Auth: s},
			InPoint: gotpm.New2B(gotpm.TPMSECCPoint{
				X: gotpm.TPM2BECCParameter{Buffer: peer[1 : 1+size]},
				Y: gotpm.TPM2BECCParameter{Buffer: peer[1+size:]},
			}),
		}.Execute(c.tr)
		if err != nil {
			if ph, ok := k.Handle(); ok && errors.Is(err, gotpm.TPMRCHandle) {
				return fmt.Errorf("%w: %v", ErrKeyNotFound, ph)
			}
			return mapRC(err)
		}
		return copyX(out, s.captured)
	})
	if err == nil {
		if cerr := kem.CheckDHOutput(k.kemID, out); cerr != nil {
			err = fmt.Errorf("tpm2: ecdh: %w", cerr)
		}
	}
	if err != nil {
		clear(out)
		return nil, fmt.Errorf("tpm2: ecdh: %w", err)
	}
	return out, nil
}

// copyX copies the X coordinate of a marshalled TPMS_ECC_POINT
// (X.size | X | Y.size | Y) into out, left-padded.
func copyX(out, point []byte) error {
	if len(point) < 2 {
		return errors.New("tpm2: ecdh: short response")
	}
	n := int(binary.BigEndian.Uint16(point))
	if n > len(out) || 2+n > len(point) {
		return fmt.Errorf("tpm2: ecdh: bad X coordinate size %d", n)
	}
	clear(out)
	copy(out[len(out)-n:], point[2:2+n])
	return nil
}

// Compile-time checks of the interfaces a Key satisfies.
var (
	_ kem.Exchanger     = (*Key)(nil)
	_ kem.PrivateKey    = (*Key)(nil)
	_ ecdh.KeyExchanger = (*Key)(nil)
)
