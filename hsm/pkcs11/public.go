package pkcs11

import (
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
	mod, slot, ti, err := openSlot(ctx, u, buildOptions(opts))
	if err != nil {
		return 0, nil, err
	}
	defer mod.Close()
	c := mod.st.ctx
	s := &session{}
	if err := mod.st.openSession(slot, p11.CKF_SERIAL_SESSION, s); err != nil {
		return 0, nil, fmt.Errorf("pkcs11: C_OpenSession: %w", err)
	}
	defer mod.st.closeSession(s)
	hs, err := findObjects(c, s, refTemplate(p11.CKO_PUBLIC_KEY, u.Key))
	if err != nil {
		return 0, nil, err
	}
	cv, pub, err := publicFromObjects(c, s, hs, nil, u.Key)
	if err != nil {
		return 0, nil, err
	}
	if pub == nil {
		return 0, nil, fmt.Errorf("%w: no readable public key object with %s on token %q", ErrPublicKeyNotFound, u.Key, ti.Label)
	}
	return cv.kem, pub, nil
}
