package pkcs11

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"sync"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// KeyAttributes are the security-relevant attributes of a private key
// object.
type KeyAttributes struct {
	Token            bool // CKA_TOKEN: persists on the token
	Private          bool // CKA_PRIVATE: visible only after login
	Sensitive        bool // CKA_SENSITIVE: CKA_VALUE cannot be read
	Extractable      bool // CKA_EXTRACTABLE: can be wrapped off the token
	AlwaysSensitive  bool // CKA_ALWAYS_SENSITIVE: has always been sensitive
	NeverExtractable bool // CKA_NEVER_EXTRACTABLE: has never been extractable
	Local            bool // CKA_LOCAL: generated on the token (false when imported)
	Derive           bool // CKA_DERIVE: usable for ECDH
}

// KeyInfo describes a private key on a token, as [Token.ListKeys] reports
// it.
type KeyInfo struct {
	ID    []byte // CKA_ID
	Label string // CKA_LABEL
	// KeyType names CKA_KEY_TYPE: "CKK_EC", "CKK_EC_MONTGOMERY",
	// "CKK_EC_EDWARDS" (SoftHSM2's X25519/X448), "CKK_RSA", ...
	KeyType string
	// KEM is the HPKE KEM the key serves, 0 when none does.
	KEM kem.ID
	// Curve is "P-256", "P-384", "P-521", "X25519" or "X448"; "" otherwise.
	Curve string
	// PublicKey is the public key serialized as HPKE's SerializePublicKey,
	// nil when it is unknown.
	PublicKey  []byte
	Attributes KeyAttributes
	// URI is an RFC 7512 URI naming this key on this token (token label,
	// serial, id, object); it has no module-path and no PIN.
	URI string
	// Unusable says why [Token.FindKey] would refuse the key (wrapping
	// ErrUnsupportedKeyType, ErrKeyNotDerivable, ErrKeyExtractable or
	// ErrPublicKeyNotFound); nil for a usable key.
	Unusable error
}

// Key is a Diffie-Hellman private key that stays on a PKCS#11 token.
//
// It implements [kem.Exchanger] for every curve, and for P-256, P-384, P-521
// and X25519 Go's [crypto/ecdh.KeyExchanger], so
// crypto/hpke.NewDHKEMPrivateKey accepts it. A Key is safe for concurrent
// use. Its object handle is cached and found again by CKA_ID after the Token
// recovers. No method returns private key material.
type Key struct {
	tok     *Token
	curve   *curve
	info    KeyInfo
	findRef KeyRef
	ecdhPub *ecdh.PublicKey
	cache   atomic.Pointer[handleCache]

	owned     bool // Close closes tok (OpenKey)
	closeOnce sync.Once
	closeErr  error
}

// handleCache is a private key object handle valid in one Token
// generation.
type handleCache struct {
	gen uint64
	h   p11.ObjectHandle
}

// KEM reports the HPKE KEM of the key.
func (k *Key) KEM() kem.ID { return k.curve.kem }

// PublicKeyBytes returns the public key serialized as HPKE's
// SerializePublicKey: the uncompressed SEC1 point (NIST curves) or the
// u-coordinate (X25519, X448). The caller may modify the returned slice.
func (k *Key) PublicKeyBytes() []byte { return bytes.Clone(k.info.PublicKey) }

// PublicKey returns the public key as a crypto/ecdh key, or nil for X448,
// which crypto/ecdh does not implement. Part of [ecdh.KeyExchanger].
func (k *Key) PublicKey() *ecdh.PublicKey { return k.ecdhPub }

// Curve returns the crypto/ecdh curve, or nil for X448. Part of
// [ecdh.KeyExchanger].
func (k *Key) Curve() ecdh.Curve { return k.curve.ecdh }

// ID returns the key's CKA_ID.
func (k *Key) ID() []byte { return bytes.Clone(k.info.ID) }

// Label returns the key's CKA_LABEL.
func (k *Key) Label() string { return k.info.Label }

// URI returns an RFC 7512 URI naming the key (token label and serial, id,
// object), without module-path or PIN.
func (k *Key) URI() string { return k.info.URI }

// Info describes the key as it was when it was found.
func (k *Key) Info() KeyInfo {
	i := k.info
	i.ID = bytes.Clone(i.ID)
	i.PublicKey = bytes.Clone(i.PublicKey)
	return i
}

// Token returns the token the key is on.
func (k *Key) Token() *Token { return k.tok }

// Close releases what [OpenKey] opened for the key (its Token and module
// reference). For a key from [Token.FindKey] and the like it does nothing:
// close the Token instead. Close is idempotent.
func (k *Key) Close() error {
	if !k.owned {
		return nil
	}
	k.closeOnce.Do(func() { k.closeErr = k.tok.Close() })
	return k.closeErr
}

// handle returns the private key's object handle for session s, finding it
// again by CKA_ID when the Token has recovered since it was cached.
func (k *Key) handle(s *session) (p11.ObjectHandle, error) {
	if c := k.cache.Load(); c != nil && c.gen == s.gen {
		return c.h, nil
	}
	h, err := k.tok.findPrivateKey(s, k.findRef)
	if err != nil {
		return 0, err
	}
	k.cache.Store(&handleCache{gen: s.gen, h: h})
	return h, nil
}

// findPrivateKey returns the handle of the one private key ref names.
func (t *Token) findPrivateKey(s *session, ref KeyRef) (p11.ObjectHandle, error) {
	hs, err := findObjects(t.ctx(), s, refTemplate(p11.CKO_PRIVATE_KEY, ref))
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 1:
		return hs[0], nil
	case 0:
		if t.needLogin && !t.loggedIn(s) {
			// Private objects are invisible when the login was lost (a
			// C_Logout behind our back): that calls for a new login, not
			// for "not found".
			return 0, fmt.Errorf("pkcs11: find key %s: %w", ref, p11.Error(p11.CKR_USER_NOT_LOGGED_IN))
		}
		return 0, fmt.Errorf("%w: no private key with %s on token %q", ErrKeyNotFound, ref, t.info.Label)
	}
	return 0, fmt.Errorf("%w: %d private keys with %s on token %q", ErrKeyAmbiguous, len(hs), ref, t.info.Label)
}

var privateKeyAttrTypes = []uint{
	p11.CKA_KEY_TYPE, p11.CKA_ID, p11.CKA_LABEL, p11.CKA_TOKEN, p11.CKA_PRIVATE,
	p11.CKA_SENSITIVE, p11.CKA_EXTRACTABLE, p11.CKA_ALWAYS_SENSITIVE,
	p11.CKA_NEVER_EXTRACTABLE, p11.CKA_LOCAL, p11.CKA_DERIVE,
}

// describeKey reads a private key object and says whether and how it can
// be used. err is for failures to talk to the module only.
func (t *Token) describeKey(s *session, h p11.ObjectHandle) (KeyInfo, *curve, error) {
	c := t.ctx()
	a, err := getAttrs(c, s, h, privateKeyAttrTypes...)
	if err != nil {
		return KeyInfo{}, nil, err
	}
	info := KeyInfo{
		ID:    a[p11.CKA_ID],
		Label: string(a[p11.CKA_LABEL]),
		Attributes: KeyAttributes{
			Token:            attrBool(a[p11.CKA_TOKEN]),
			Private:          attrBool(a[p11.CKA_PRIVATE]),
			Sensitive:        attrBool(a[p11.CKA_SENSITIVE]),
			Extractable:      attrBool(a[p11.CKA_EXTRACTABLE]),
			AlwaysSensitive:  attrBool(a[p11.CKA_ALWAYS_SENSITIVE]),
			NeverExtractable: attrBool(a[p11.CKA_NEVER_EXTRACTABLE]),
			Local:            attrBool(a[p11.CKA_LOCAL]),
			Derive:           attrBool(a[p11.CKA_DERIVE]),
		},
	}
	info.URI = (&URI{Token: TokenSelector{Label: t.info.Label, Serial: t.info.Serial}, Key: KeyRef{ID: info.ID, Label: info.Label}}).String()
	kt, ok := attrULong(a[p11.CKA_KEY_TYPE])
	if !ok {
		info.KeyType = "unknown"
		info.Unusable = fmt.Errorf("%w: CKA_KEY_TYPE unreadable", ErrUnsupportedKeyType)
		return info, nil, nil
	}
	info.KeyType = keyTypeName(kt)
	if kt != p11.CKK_EC && kt != ckkECMontgomery && kt != ckkECEdwards {
		info.Unusable = fmt.Errorf("%w: CKA_KEY_TYPE is %s", ErrUnsupportedKeyType, info.KeyType)
		return info, nil, nil
	}
	pa, err := getAttrs(c, s, h, p11.CKA_EC_PARAMS)
	if err != nil {
		return KeyInfo{}, nil, err
	}
	cv, err := curveFromParams(kt, pa[p11.CKA_EC_PARAMS])
	if err != nil {
		info.Unusable = err
		return info, nil, nil
	}
	info.KEM, info.Curve = cv.kem, cv.name
	pub, err := t.publicKey(s, h, kt, info.ID, info.Label, cv)
	if err != nil {
		if ckr(err) != 0 { // the module failed, not the key
			return KeyInfo{}, nil, err
		}
		info.Unusable = err
		return info, cv, nil
	}
	info.PublicKey = pub
	switch {
	case !info.Attributes.Derive:
		info.Unusable = ErrKeyNotDerivable
	case t.o.strict && info.Attributes.Extractable:
		info.Unusable = fmt.Errorf("%w: CKA_EXTRACTABLE is true (strict mode)", ErrKeyExtractable)
	case t.o.strict && !info.Attributes.Sensitive:
		info.Unusable = fmt.Errorf("%w: CKA_SENSITIVE is false (strict mode)", ErrKeyExtractable)
	}
	return info, cv, nil
}

// publicKey finds the public half of private key h: the public key object
// with the same CKA_ID (or label when there is no id), else CKA_EC_POINT or
// CKA_PUBLIC_KEY_INFO on the private key itself.
func (t *Token) publicKey(s *session, h p11.ObjectHandle, kt uint, id []byte, label string, cv *curve) ([]byte, error) {
	c := t.ctx()
	ref := KeyRef{ID: id}
	if len(id) == 0 {
		ref.Label = label
	}
	if !ref.IsZero() {
		hs, err := findObjects(c, s, append(refTemplate(p11.CKO_PUBLIC_KEY, ref), p11.NewAttribute(p11.CKA_KEY_TYPE, kt)))
		if err != nil {
			return nil, err
		}
		if _, pub, err := publicFromObjects(c, s, hs, cv, ref); err != nil || pub != nil {
			return pub, err
		}
	}
	a, err := getAttrs(c, s, h, p11.CKA_EC_POINT, p11.CKA_PUBLIC_KEY_INFO)
	if err != nil {
		return nil, err
	}
	if raw, ok := cv.rawPoint(a[p11.CKA_EC_POINT]); ok {
		return bytes.Clone(raw), cv.checkPublic(raw)
	}
	if raw, ok := cv.fromSPKI(a[p11.CKA_PUBLIC_KEY_INFO]); ok {
		return raw, cv.checkPublic(raw)
	}
	return nil, fmt.Errorf("%w: no public key object with %s and no CKA_EC_POINT on the private key", ErrPublicKeyNotFound, ref)
}

// publicFromObjects reads the public key objects hs (ref names them, for
// messages) and returns the valid public key they hold and its curve, or a
// nil key when none holds one. With want set, only keys on that curve
// count. Objects that hold different keys are ErrKeyAmbiguous.
func publicFromObjects(c *p11.Ctx, s *session, hs []p11.ObjectHandle, want *curve, ref KeyRef) (*curve, []byte, error) {
	var cv *curve
	var found []byte
	for _, h := range hs {
		a, err := getAttrs(c, s, h, p11.CKA_KEY_TYPE, p11.CKA_EC_PARAMS, p11.CKA_EC_POINT)
		if err != nil {
			return nil, nil, err
		}
		kt, ok := attrULong(a[p11.CKA_KEY_TYPE])
		if !ok {
			continue
		}
		pc, err := curveFromParams(kt, a[p11.CKA_EC_PARAMS])
		if err != nil || (want != nil && pc != want) {
			continue
		}
		raw, ok := pc.rawPoint(a[p11.CKA_EC_POINT])
		if !ok || pc.checkPublic(raw) != nil {
			continue
		}
		if found != nil && (pc != cv || !bytes.Equal(found, raw)) {
			return nil, nil, fmt.Errorf("%w: public key objects for %s disagree", ErrKeyAmbiguous, ref)
		}
		cv, found = pc, raw
	}
	return cv, bytes.Clone(found), nil
}

// checkPublic validates the token's own public key.
func (c *curve) checkPublic(raw []byte) error {
	if c.ecdh == nil {
		if len(raw) != c.pubLen {
			return fmt.Errorf("%w: %s public key on the token has %d bytes", ErrPublicKeyNotFound, c.name, len(raw))
		}
		return nil
	}
	if _, err := c.ecdh.NewPublicKey(raw); err != nil {
		return fmt.Errorf("%w: %s public key on the token is invalid", ErrPublicKeyNotFound, c.name)
	}
	return nil
}

// fromSPKI extracts the public key from a DER SubjectPublicKeyInfo of this
// curve.
func (c *curve) fromSPKI(der []byte) ([]byte, bool) {
	if len(der) == 0 {
		return nil, false
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(der, &spki); err != nil || len(rest) != 0 {
		return nil, false
	}
	if c.montgomery {
		if !spki.Algorithm.Algorithm.Equal(c.oid) {
			return nil, false
		}
	} else {
		var named asn1.ObjectIdentifier
		ecPublicKey := asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
		if !spki.Algorithm.Algorithm.Equal(ecPublicKey) {
			return nil, false
		}
		if _, err := asn1.Unmarshal(spki.Algorithm.Parameters.FullBytes, &named); err != nil || !named.Equal(c.oid) {
			return nil, false
		}
	}
	raw := spki.PublicKey.RightAlign()
	if len(raw) != c.pubLen {
		return nil, false
	}
	return raw, true
}

// newKey describes private key h, which ref names, and makes a Key of it
// if it is usable.
func (t *Token) newKey(s *session, h p11.ObjectHandle, ref KeyRef) (*Key, error) {
	info, cv, err := t.describeKey(s, h)
	if err != nil {
		return nil, err
	}
	if info.Unusable != nil {
		return nil, fmt.Errorf("pkcs11: key %s on token %q: %w", ref, t.info.Label, info.Unusable)
	}
	k := &Key{tok: t, curve: cv, info: info}
	// Find again by the key's CKA_ID, plus the label if the caller named it.
	k.findRef = KeyRef{ID: info.ID, Label: ref.Label}
	if len(info.ID) == 0 {
		k.findRef.Label = info.Label
	}
	if cv.ecdh != nil {
		pub, err := cv.ecdh.NewPublicKey(info.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("pkcs11: key %s: %w", ref, ErrPublicKeyNotFound)
		}
		k.ecdhPub = pub
	}
	k.cache.Store(&handleCache{gen: s.gen, h: h})
	return k, nil
}

// FindKey finds the private key ref names (by CKA_ID, CKA_LABEL or both)
// and checks it can serve an HPKE KEM: an EC key on P-256/P-384/P-521 or an
// X25519/X448 key, with CKA_DERIVE, and in strict mode neither extractable
// nor non-sensitive. Errors wrap ErrKeyNotFound, ErrKeyAmbiguous,
// ErrUnsupportedKeyType, ErrKeyNotDerivable, ErrKeyExtractable or
// ErrPublicKeyNotFound.
func (t *Token) FindKey(ctx context.Context, ref KeyRef) (*Key, error) {
	if ref.IsZero() {
		return nil, fmt.Errorf("%w: no key named (give id= or object=)", ErrInvalidURI)
	}
	var k *Key
	err := t.do(ctx, "find key", func(s *session) error {
		h, err := t.findPrivateKey(s, ref)
		if err != nil {
			return err
		}
		k, err = t.newKey(s, h, ref)
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// ListKeys describes every private key on the token the user can see,
// usable or not (see KeyInfo.Unusable).
func (t *Token) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := t.do(ctx, "list keys", func(s *session) error {
		out = out[:0]
		hs, err := findObjects(t.ctx(), s, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY)})
		if err != nil {
			return err
		}
		for _, h := range hs {
			info, _, err := t.describeKey(s, h)
			if err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// DeleteKey destroys the private key ref names and the public key objects
// with its CKA_ID. It fails with ErrKeyNotFound or ErrKeyAmbiguous rather
// than deleting more than one private key.
func (t *Token) DeleteKey(ctx context.Context, ref KeyRef) error {
	if ref.IsZero() {
		return fmt.Errorf("%w: no key named (give id= or object=)", ErrInvalidURI)
	}
	deleted := false
	return t.do(ctx, "delete key", func(s *session) error {
		c := t.ctx()
		hs, err := findObjects(c, s, refTemplate(p11.CKO_PRIVATE_KEY, ref))
		if err != nil {
			return err
		}
		switch {
		case len(hs) == 0 && deleted:
			return nil // a retry after the destroy went through
		case len(hs) == 0:
			return fmt.Errorf("%w: no private key with %s on token %q", ErrKeyNotFound, ref, t.info.Label)
		case len(hs) > 1:
			return fmt.Errorf("%w: %d private keys with %s on token %q; not deleting", ErrKeyAmbiguous, len(hs), ref, t.info.Label)
		}
		a, err := getAttrs(c, s, hs[0], p11.CKA_ID, p11.CKA_LABEL)
		if err != nil {
			return err
		}
		pubRef := KeyRef{ID: a[p11.CKA_ID]}
		if len(pubRef.ID) == 0 {
			pubRef.Label = string(a[p11.CKA_LABEL])
		}
		var pubs []p11.ObjectHandle
		if !pubRef.IsZero() {
			if pubs, err = findObjects(c, s, refTemplate(p11.CKO_PUBLIC_KEY, pubRef)); err != nil {
				return err
			}
		}
		if err := c.DestroyObject(s.h, hs[0]); err != nil {
			return fmt.Errorf("pkcs11: destroy private key %s: %w", ref, err)
		}
		deleted = true
		for _, ph := range pubs {
			if err := c.DestroyObject(s.h, ph); err != nil && !isCKR(err, p11.CKR_OBJECT_HANDLE_INVALID) {
				return fmt.Errorf("pkcs11: destroy public key %s: %w", pubRef, err)
			}
		}
		return nil
	})
}

// randomID returns a fresh 16-byte CKA_ID.
func randomID() []byte {
	id := make([]byte, 16)
	rand.Read(id)
	return id
}

// keyExists fails with ErrKeyExists when a private or public key object
// with this CKA_ID exists.
func (t *Token) keyExists(s *session, id []byte) error {
	for _, class := range []uint{p11.CKO_PRIVATE_KEY, p11.CKO_PUBLIC_KEY} {
		hs, err := findObjects(t.ctx(), s, refTemplate(class, KeyRef{ID: id}))
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			return fmt.Errorf("%w: %s on token %q", ErrKeyExists, KeyRef{ID: id}, t.info.Label)
		}
	}
	return nil
}

// loggedIn reports whether session s is in a user state.
func (t *Token) loggedIn(s *session) bool {
	si, err := t.ctx().GetSessionInfo(s.h)
	return err == nil && (si.State == p11.CKS_RW_USER_FUNCTIONS || si.State == p11.CKS_RO_USER_FUNCTIONS)
}
