package pkcs11

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/dh/x448"
	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// route is a way of making a key of a curve on a token: a key-pair
// generation mechanism and the key type the objects get.
type route int

// The routes this package knows.
const (
	// routeEC: CKM_EC_KEY_PAIR_GEN making CKK_EC keys; the NIST curves.
	routeEC route = iota + 1
	// routeMontgomery: CKM_EC_MONTGOMERY_KEY_PAIR_GEN making
	// CKK_EC_MONTGOMERY keys, the PKCS#11 3.0 way to X25519 and X448.
	routeMontgomery
	// routeEdwardsOID: CKM_EC_EDWARDS_KEY_PAIR_GEN making CKK_EC_EDWARDS
	// keys whose CKA_EC_PARAMS is the X25519 or X448 OID (1.3.101.110,
	// 1.3.101.111). SoftHSM 2.6 makes Montgomery keys this way and derives
	// with them through CKM_ECDH1_DERIVE.
	routeEdwardsOID
)

// String names the route by its mechanism and key type.
func (r route) String() string {
	switch r {
	case routeEC:
		return "CKM_EC_KEY_PAIR_GEN/CKK_EC"
	case routeMontgomery:
		return "CKM_EC_MONTGOMERY_KEY_PAIR_GEN/CKK_EC_MONTGOMERY"
	case routeEdwardsOID:
		return "CKM_EC_EDWARDS_KEY_PAIR_GEN/CKK_EC_EDWARDS+X-curve OID"
	}
	return "no route"
}

func (r route) mechanism() uint {
	switch r {
	case routeMontgomery:
		return ckmECMontgomeryKeyPairGen
	case routeEdwardsOID:
		return ckmECEdwardsKeyPairGen
	}
	return p11.CKM_EC_KEY_PAIR_GEN
}

func (r route) keyType() uint {
	switch r {
	case routeMontgomery:
		return ckkECMontgomery
	case routeEdwardsOID:
		return ckkECEdwards
	}
	return p11.CKK_EC
}

// routes lists the routes to try for a curve, best first. For X25519/X448:
// the route that already worked on this token, then those whose mechanism
// the token lists (PKCS#11 3.0's before SoftHSM's), then the unlisted ones,
// since some modules' mechanism lists are incomplete.
func (t *Token) routes(cv *curve) ([]route, error) {
	if !cv.montgomery {
		return []route{routeEC}, nil
	}
	mechs, err := t.mechanisms()
	if err != nil {
		return nil, err
	}
	var out []route
	add := func(r route) {
		for _, x := range out {
			if x == r {
				return
			}
		}
		out = append(out, r)
	}
	if r := route(t.montRoute.Load()); r != 0 {
		add(r)
	}
	for _, r := range []route{routeMontgomery, routeEdwardsOID} {
		if mechs[r.mechanism()] {
			add(r)
		}
	}
	add(routeMontgomery)
	add(routeEdwardsOID)
	return out, nil
}

// keyTemplates returns the public and private key templates for a token
// key pair on route r. Private keys are sensitive, never extractable, and
// can only derive.
func keyTemplates(r route, cv *curve, ref KeyRef) (pub, priv []*p11.Attribute) {
	pub = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, r.keyType()),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_EC_PARAMS, cv.params),
		p11.NewAttribute(p11.CKA_VERIFY, false),
	}
	priv = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, r.keyType()),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_DERIVE, true),
		p11.NewAttribute(p11.CKA_SIGN, false),
	}
	if len(ref.ID) > 0 {
		pub = append(pub, p11.NewAttribute(p11.CKA_ID, ref.ID))
		priv = append(priv, p11.NewAttribute(p11.CKA_ID, ref.ID))
	}
	if ref.Label != "" {
		pub = append(pub, p11.NewAttribute(p11.CKA_LABEL, ref.Label))
		priv = append(priv, p11.NewAttribute(p11.CKA_LABEL, ref.Label))
	}
	return pub, priv
}

// GenerateKey generates a key pair for a DHKEM on the token: CKA_TOKEN,
// CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_DERIVE, with ref's
// CKA_ID (16 random bytes when empty) and CKA_LABEL on both objects. For
// X25519 and X448 it uses whichever of [routeMontgomery] and
// [routeEdwardsOID] the token takes. An existing private key with the same
// CKA_ID is ErrKeyExists; a curve the token cannot make is
// ErrUnsupportedKeyType.
func (t *Token) GenerateKey(ctx context.Context, id kem.ID, ref KeyRef) (*Key, error) {
	cv, err := curveForKEM(id)
	if err != nil {
		return nil, err
	}
	return t.createKey(ctx, "generate", cv, ref, func(c *p11.Ctx, s *session, r route, pubT, privT []*p11.Attribute) (p11.ObjectHandle, p11.ObjectHandle, error) {
		return c.GenerateKeyPair(s.h, []*p11.Mechanism{p11.NewMechanism(r.mechanism(), nil)}, pubT, privT)
	})
}

// ImportKey stores an existing private key on the token as a sensitive,
// non-extractable, derive-only key, with a public key object beside it: for
// migrating software keys, and for tests that need known key bytes.
// P-256, P-384, P-521 and X25519 keys are accepted; see ImportX448Key for
// X448. The copy of the scalar this function makes is zeroed; the caller
// still owns priv. ref.ID defaults to 16 random bytes.
func (t *Token) ImportKey(ctx context.Context, priv *ecdh.PrivateKey, ref KeyRef) (*Key, error) {
	if priv == nil {
		return nil, fmt.Errorf("%w: nil private key", ErrUnsupportedKeyType)
	}
	var cv *curve
	for _, c := range curves {
		if c.ecdh != nil && c.ecdh == priv.Curve() {
			cv = c
		}
	}
	if cv == nil {
		return nil, fmt.Errorf("%w: curve %v", ErrUnsupportedKeyType, priv.Curve())
	}
	value := priv.Bytes()
	defer clear(value)
	return t.importKey(ctx, cv, value, priv.PublicKey().Bytes(), ref)
}

// ImportX448Key is ImportKey for a raw 56-byte X448 private key (RFC 7748),
// which crypto/ecdh cannot represent.
func (t *Token) ImportX448Key(ctx context.Context, priv []byte, ref KeyRef) (*Key, error) {
	if len(priv) != x448.Size {
		return nil, fmt.Errorf("%w: X448 private key must be %d bytes, got %d", ErrUnsupportedKeyType, x448.Size, len(priv))
	}
	var sk, pk x448.Key
	copy(sk[:], priv)
	defer clear(sk[:])
	x448.KeyGen(&pk, &sk)
	return t.importKey(ctx, curveX448, sk[:], pk[:], ref)
}

func (t *Token) importKey(ctx context.Context, cv *curve, value, pub []byte, ref KeyRef) (*Key, error) {
	return t.createKey(ctx, "import", cv, ref, func(c *p11.Ctx, s *session, _ route, pubT, privT []*p11.Attribute) (p11.ObjectHandle, p11.ObjectHandle, error) {
		privT = append(privT, p11.NewAttribute(p11.CKA_EC_PARAMS, cv.params), p11.NewAttribute(p11.CKA_VALUE, value))
		pubT = append(pubT, p11.NewAttribute(p11.CKA_EC_POINT, wrapOctetString(pub)))
		privH, err := c.CreateObject(s.h, privT)
		if err != nil {
			return 0, 0, err
		}
		pubH, err := c.CreateObject(s.h, pubT)
		if err != nil {
			c.DestroyObject(s.h, privH)
			return 0, 0, fmt.Errorf("public key: %w", err)
		}
		return pubH, privH, nil
	})
}

// createKey puts a key pair for curve cv on the token (verb is "generate"
// or "import", for messages) and returns it as a Key. For each route, best
// first, create makes the objects from the route's templates. A route the
// token refuses gives way to the next; a failure that may pass
// (CKR_GENERAL_ERROR, ...) is retried, every route again, once no route
// worked. A retry after the pair was made picks it up instead.
func (t *Token) createKey(ctx context.Context, verb string, cv *curve, ref KeyRef,
	create func(c *p11.Ctx, s *session, r route, pubT, privT []*p11.Attribute) (pub, priv p11.ObjectHandle, err error)) (*Key, error) {
	if len(ref.ID) == 0 {
		ref.ID = randomID()
	}
	var k *Key
	created := false
	err := t.do(ctx, verb+" key", func(s *session) error {
		if created { // a retry after the pair was made: pick it up
			h, err := t.findPrivateKey(s, ref)
			if err == nil {
				k, err = t.newKey(s, h, ref)
			}
			return err
		}
		if err := t.keyExists(s, ref.ID); err != nil {
			return err
		}
		routes, err := t.routes(cv)
		if err != nil {
			return err
		}
		c := t.ctx()
		var errs []error
		var transient error
		for _, r := range routes {
			pubT, privT := keyTemplates(r, cv, ref)
			pubH, privH, err := create(c, s, r, pubT, privT)
			if err != nil {
				switch classify(err) {
				case recoverLogin, recoverSession, recoverModule: // the session or the login is gone, not the route
					return fmt.Errorf("pkcs11: %s %s key: %w", verb, cv.name, err)
				case recoverRetry, recoverHandle:
					if transient == nil {
						transient = fmt.Errorf("pkcs11: %s %s key: %w", verb, cv.name, err)
					}
				}
				errs = append(errs, fmt.Errorf("%v: %w", r, err))
				continue
			}
			created = true
			if cv.montgomery {
				t.montRoute.Store(int32(r))
			}
			k, err = t.newKey(s, privH, ref)
			if err != nil && classify(err) == recoverNone {
				c.DestroyObject(s.h, privH)
				c.DestroyObject(s.h, pubH)
				created = false
			}
			return err
		}
		if transient != nil {
			return transient
		}
		return fmt.Errorf("%w: token %q cannot %s %s keys: %w", ErrUnsupportedKeyType, t.info.Label, verb, cv.name, errors.Join(errs...))
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}
