package pkcs11

import (
	"bytes"
	"context"
	"fmt"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// ReadPublicKey returns the KEM and the public key (HPKE's
// SerializePublicKey) of the key that uri names by id and/or object, read
// from the token's public key object in a read-only session without logging
// in: what publishing a key configuration needs, and no more. It fails with
// ErrPublicKeyNotFound when the token keeps no readable public key object
// for the key (then open the token with its PIN and use Token.FindKey), and
// with ErrKeyAmbiguous when the URI matches public keys that differ.
func ReadPublicKey(ctx context.Context, uri string, opts ...Option) (kem.ID, []byte, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return 0, nil, err
	}
	if u.Key.IsZero() {
		return 0, nil, fmt.Errorf("%w: the URI names no key (give id= and/or object=)", ErrInvalidURI)
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	o := buildOptions(opts)
	path, err := modulePath(u, o)
	if err != nil {
		return 0, nil, err
	}
	mod, err := OpenModule(path)
	if err != nil {
		return 0, nil, err
	}
	defer mod.Close()
	t := &Token{mod: mod, o: o, log: o.logger}
	slot, _, err := t.findToken(u.Token)
	if err != nil {
		return 0, nil, err
	}
	c := mod.Ctx()
	sh, err := c.OpenSession(slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		return 0, nil, fmt.Errorf("pkcs11: C_OpenSession: %w", err)
	}
	defer c.CloseSession(sh)
	s := &session{h: sh}
	hs, err := findObjects(c, s, refTemplate(p11.CKO_PUBLIC_KEY, u.Key))
	if err != nil {
		return 0, nil, err
	}
	var id kem.ID
	var found []byte
	for _, h := range hs {
		a, err := getAttrs(c, s, h, p11.CKA_KEY_TYPE, p11.CKA_EC_PARAMS, p11.CKA_EC_POINT)
		if err != nil {
			return 0, nil, err
		}
		kt, ok := attrULong(a[p11.CKA_KEY_TYPE])
		if !ok {
			continue
		}
		cv, err := curveFromParams(kt, a[p11.CKA_EC_PARAMS])
		if err != nil {
			continue
		}
		raw, ok := cv.rawPoint(a[p11.CKA_EC_POINT])
		if !ok || cv.checkPublic(raw) != nil {
			continue
		}
		if found != nil && (!bytes.Equal(found, raw) || id != cv.kem) {
			return 0, nil, fmt.Errorf("%w: public key objects for %s disagree", ErrKeyAmbiguous, u.Key)
		}
		id, found = cv.kem, bytes.Clone(raw)
	}
	if found == nil {
		return 0, nil, fmt.Errorf("%w: no readable public key object with %s on token %q", ErrPublicKeyNotFound, u.Key, u.Token.Label)
	}
	return id, found, nil
}
