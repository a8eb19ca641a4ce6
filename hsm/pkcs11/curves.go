package pkcs11

import (
	"crypto/ecdh"
	"encoding/asn1"
	"fmt"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// PKCS#11 3.0 constants that github.com/miekg/pkcs11 v1.1.2 lacks.
const (
	ckkECEdwards              = 0x00000040 // CKK_EC_EDWARDS
	ckkECMontgomery           = 0x00000041 // CKK_EC_MONTGOMERY
	ckmECEdwardsKeyPairGen    = 0x00001055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmECMontgomeryKeyPairGen = 0x00001056 // CKM_EC_MONTGOMERY_KEY_PAIR_GEN
)

// curve describes one Diffie-Hellman group an HPKE DHKEM uses.
type curve struct {
	kem        kem.ID
	name       string
	ecdh       ecdh.Curve // nil for X448, which crypto/ecdh lacks
	oid        asn1.ObjectIdentifier
	params     []byte // DER of oid: CKA_EC_PARAMS
	size       int    // field size in bytes: the length of the DH output
	pubLen     int    // length of the serialized public key
	montgomery bool
	// deriveTmpl is the template of the secret CKM_ECDH1_DERIVE makes,
	// shared by every exchange on the curve.
	deriveTmpl []*p11.Attribute
}

var (
	curveP256   = newCurve(kem.DHKEMP256HKDFSHA256, "P-256", asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, false)
	curveP384   = newCurve(kem.DHKEMP384HKDFSHA384, "P-384", asn1.ObjectIdentifier{1, 3, 132, 0, 34}, false)
	curveP521   = newCurve(kem.DHKEMP521HKDFSHA512, "P-521", asn1.ObjectIdentifier{1, 3, 132, 0, 35}, false)
	curveX25519 = newCurve(kem.DHKEMX25519HKDFSHA256, "X25519", asn1.ObjectIdentifier{1, 3, 101, 110}, true)
	curveX448   = newCurve(kem.DHKEMX448HKDFSHA512, "X448", asn1.ObjectIdentifier{1, 3, 101, 111}, true)

	curves = []*curve{curveP256, curveP384, curveP521, curveX25519, curveX448}
)

// newCurve takes the crypto/ecdh curve and the sizes from the kem package.
func newCurve(id kem.ID, name string, oid asn1.ObjectIdentifier, mont bool) *curve {
	params, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	cv := &curve{kem: id, name: name, ecdh: id.Curve(), oid: oid, params: params,
		size: id.DHSize(), pubLen: id.PublicKeySize(), montgomery: mont}
	cv.deriveTmpl = deriveTemplate(cv)
	return cv
}

// curveForKEM returns the curve of a DHKEM.
func curveForKEM(id kem.ID) (*curve, error) {
	for _, c := range curves {
		if c.kem == id {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: %v is not a Diffie-Hellman KEM this backend can put on a token", ErrUnsupportedKeyType, id)
}

// Names PKCS#11 3.0 allows in CKA_EC_PARAMS (as a PrintableString) for the
// Montgomery curves.
var montgomeryNames = map[string]*curve{
	"curve25519": curveX25519, "X25519": curveX25519, "x25519": curveX25519,
	"curve448": curveX448, "X448": curveX448, "x448": curveX448,
}

// curveFromParams maps a key's CKA_KEY_TYPE and CKA_EC_PARAMS onto a curve,
// or explains (wrapping ErrUnsupportedKeyType) why no HPKE KEM uses it.
func curveFromParams(keyType uint, params []byte) (*curve, error) {
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(params, &raw)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: CKA_EC_PARAMS is not valid DER", ErrUnsupportedKeyType)
	}
	var found *curve
	var what string
	switch {
	case raw.Class == asn1.ClassUniversal && raw.Tag == asn1.TagOID:
		var oid asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(params, &oid); err != nil {
			return nil, fmt.Errorf("%w: CKA_EC_PARAMS holds a malformed OID", ErrUnsupportedKeyType)
		}
		what = "OID " + oid.String()
		for _, c := range curves {
			if c.oid.Equal(oid) {
				found = c
			}
		}
	case raw.Class == asn1.ClassUniversal && raw.Tag == asn1.TagPrintableString:
		what = fmt.Sprintf("name %q", string(raw.Bytes))
		found = montgomeryNames[string(raw.Bytes)]
	default:
		return nil, fmt.Errorf("%w: CKA_EC_PARAMS holds explicit curve parameters, not a named curve", ErrUnsupportedKeyType)
	}
	if found == nil {
		return nil, fmt.Errorf("%w: CKA_EC_PARAMS names curve %s, which no HPKE KEM uses", ErrUnsupportedKeyType, what)
	}
	switch keyType {
	case p11.CKK_EC:
		if found.montgomery {
			return nil, fmt.Errorf("%w: CKA_KEY_TYPE is CKK_EC but CKA_EC_PARAMS names %s", ErrUnsupportedKeyType, found.name)
		}
	case ckkECMontgomery, ckkECEdwards:
		// CKK_EC_EDWARDS with an X25519/X448 OID is SoftHSM2's way of
		// holding Montgomery keys.
		if !found.montgomery {
			return nil, fmt.Errorf("%w: CKA_KEY_TYPE is %s but CKA_EC_PARAMS names %s", ErrUnsupportedKeyType, keyTypeName(keyType), found.name)
		}
	default:
		return nil, fmt.Errorf("%w: CKA_KEY_TYPE is %s", ErrUnsupportedKeyType, keyTypeName(keyType))
	}
	return found, nil
}

// keyTypeName names a CKK_ value.
func keyTypeName(t uint) string {
	switch t {
	case p11.CKK_RSA:
		return "CKK_RSA"
	case p11.CKK_DSA:
		return "CKK_DSA"
	case p11.CKK_DH:
		return "CKK_DH"
	case p11.CKK_EC:
		return "CKK_EC"
	case ckkECEdwards:
		return "CKK_EC_EDWARDS"
	case ckkECMontgomery:
		return "CKK_EC_MONTGOMERY"
	case p11.CKK_GENERIC_SECRET:
		return "CKK_GENERIC_SECRET"
	case p11.CKK_AES:
		return "CKK_AES"
	}
	return fmt.Sprintf("CKK(0x%x)", t)
}

// unwrapOctetString returns the content of a DER OCTET STRING that is
// exactly b, or nil.
func unwrapOctetString(b []byte) []byte {
	if len(b) < 2 || b[0] != asn1.TagOctetString {
		return nil
	}
	var v []byte
	rest, err := asn1.Unmarshal(b, &v)
	if err != nil || len(rest) != 0 {
		return nil
	}
	return v
}

// wrapOctetString DER-encodes b as an OCTET STRING, as CKA_EC_POINT holds it.
func wrapOctetString(b []byte) []byte {
	out, err := asn1.Marshal(b)
	if err != nil {
		panic(err) // cannot fail for a byte slice
	}
	return out
}

// rawPoint accepts a public key either serialized (SEC1 uncompressed for
// the NIST curves, the u-coordinate for X25519/X448) or DER-wrapped in an
// OCTET STRING as tokens return CKA_EC_POINT, and returns the serialized
// form. The length decides: no valid raw point has the length of a wrapped
// one.
func (c *curve) rawPoint(b []byte) ([]byte, bool) {
	if len(b) == c.pubLen && (c.montgomery || b[0] == 4) {
		return b, true
	}
	if v := unwrapOctetString(b); len(v) == c.pubLen && (c.montgomery || v[0] == 4) {
		return v, true
	}
	return nil, false
}

// peerPoint validates a peer public key before it goes to the token and
// returns its serialized form. NIST points must parse with crypto/ecdh
// (uncompressed, on the curve, not the identity); Montgomery points must
// have the right length and not be of small order.
func (c *curve) peerPoint(b []byte) ([]byte, error) {
	raw, ok := c.rawPoint(b)
	if !ok {
		return nil, fmt.Errorf("%w: %s public key must be %d bytes (or DER-wrapped), got %d", kem.ErrInvalidPublicKey, c.name, c.pubLen, len(b))
	}
	if c.ecdh != nil && !c.montgomery {
		if _, err := c.ecdh.NewPublicKey(raw); err != nil {
			return nil, fmt.Errorf("%w: %s point is not on the curve or is the identity", kem.ErrInvalidPublicKey, c.name)
		}
		return raw, nil
	}
	if kem.IsLowOrderPoint(c.kem, raw) {
		return nil, fmt.Errorf("%w: %s point is of small order", kem.ErrInvalidPublicKey, c.name)
	}
	return raw, nil
}

// normalizeSecret turns what the token derived into the DH output: the
// x-coordinate left-padded to the field size for the NIST curves, the
// u-coordinate for the Montgomery ones. An all-zero output (a small-order
// peer the token did not reject) is ErrInvalidPublicKey. v may be returned
// as is or zeroed.
func (c *curve) normalizeSecret(v []byte) ([]byte, error) {
	if len(v) > c.size || (c.montgomery && len(v) != c.size) || len(v) == 0 {
		n := len(v)
		clear(v)
		return nil, fmt.Errorf("pkcs11: token returned a %d-byte %s shared secret, want %d", n, c.name, c.size)
	}
	if len(v) < c.size { // a token that drops leading zero bytes
		out := make([]byte, c.size)
		copy(out[c.size-len(v):], v)
		clear(v)
		v = out
	}
	if err := kem.CheckDHOutput(c.kem, v); err != nil {
		clear(v)
		return nil, fmt.Errorf("pkcs11: %w", err)
	}
	return v, nil
}
