package kem

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
)

// Software key files. Keys on the NIST curves, X25519 and X448 (RFC 8410)
// are written as PKCS#8 ("PRIVATE KEY"), which OpenSSL and every HSM import
// tool read; ML-KEM and X-Wing, which PKCS#8 has no settled form for, as an
// "HPKE PRIVATE KEY" block whose KEM header names the KEM and whose body is
// HPKE's SerializePrivateKey.

const hpkePEMType = "HPKE PRIVATE KEY"

// MarshalPrivateKeyPEM encodes a software key as a PEM key file.
func MarshalPrivateKeyPEM(k PrivateKey) ([]byte, error) {
	if xk, ok := k.(*x448Key); ok {
		der, err := marshalX448PKCS8(xk.sk[:])
		if err != nil {
			return nil, err
		}
		defer clear(der)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	if ek, ok := k.(*ecdhKey); ok {
		der, err := x509.MarshalPKCS8PrivateKey(ek.k)
		if err != nil {
			return nil, fmt.Errorf("kem: pkcs8: %w", err)
		}
		defer clear(der)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	b, err := MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return pem.EncodeToMemory(&pem.Block{
		Type:    hpkePEMType,
		Headers: map[string]string{"KEM": fmt.Sprintf("0x%04x", uint16(k.KEM()))},
		Bytes:   b,
	}), nil
}

// ParsePrivateKeyPEM decodes a key file written by MarshalPrivateKeyPEM, or
// any PKCS#8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY") file of a P-256,
// P-384, P-521 or X25519 key.
func ParsePrivateKeyPEM(data []byte) (PrivateKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("kem: key file: no PEM block")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("kem: key file: data after the PEM block")
	}
	defer clear(block.Bytes)
	switch block.Type {
	case "PRIVATE KEY":
		if k, ok := parseX448PKCS8(block.Bytes); ok {
			return k, nil
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("kem: key file: %w", err)
		}
		return fromStdPrivateKey(k)
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("kem: key file: %w", err)
		}
		return fromStdPrivateKey(k)
	case hpkePEMType:
		v, err := strconv.ParseUint(block.Headers["KEM"], 0, 16)
		if err != nil {
			return nil, fmt.Errorf("kem: key file: bad KEM header %q", block.Headers["KEM"])
		}
		return NewPrivateKey(ID(v), block.Bytes)
	}
	return nil, fmt.Errorf("kem: key file: unsupported PEM type %q (want PRIVATE KEY, EC PRIVATE KEY or %s)", block.Type, hpkePEMType)
}

func fromStdPrivateKey(k any) (PrivateKey, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		ek, err := k.ECDH()
		if err != nil {
			return nil, fmt.Errorf("kem: key file: %w", err)
		}
		return fromECDH(ek)
	case *ecdh.PrivateKey:
		return fromECDH(k)
	}
	return nil, fmt.Errorf("%w: key file holds a %T, not a KEM key", ErrUnsupportedKEM, k)
}

func fromECDH(k *ecdh.PrivateKey) (PrivateKey, error) {
	id, err := IDForCurve(k.Curve())
	if err != nil {
		return nil, err
	}
	return newECDHKey(id, k), nil
}

// oidX448 is id-X448 (RFC 8410), which crypto/x509 does not parse.
var oidX448 = asn1.ObjectIdentifier{1, 3, 101, 111}

// pkcs8 is OneAsymmetricKey (RFC 5958) as far as RFC 8410 keys use it.
type pkcs8 struct {
	Version    int
	Algorithm  pkix.AlgorithmIdentifier
	PrivateKey []byte
	Attributes asn1.RawValue  `asn1:"optional,tag:0"`
	PublicKey  asn1.BitString `asn1:"optional,tag:1"`
}

// parseX448PKCS8 decodes a PKCS#8 X448 key; ok is false for any other key.
func parseX448PKCS8(der []byte) (PrivateKey, bool) {
	var p pkcs8
	rest, err := asn1.Unmarshal(der, &p)
	defer clear(p.PrivateKey)
	if err != nil || len(rest) != 0 || !p.Algorithm.Algorithm.Equal(oidX448) {
		return nil, false
	}
	var scalar []byte
	rest, err = asn1.Unmarshal(p.PrivateKey, &scalar)
	defer clear(scalar)
	if err != nil || len(rest) != 0 {
		return nil, false
	}
	k, err := NewPrivateKey(DHKEMX448HKDFSHA512, scalar)
	if err != nil {
		return nil, false
	}
	return k, true
}

// marshalX448PKCS8 encodes an X448 scalar as a PKCS#8 key (RFC 8410).
func marshalX448PKCS8(scalar []byte) ([]byte, error) {
	inner, err := asn1.Marshal(scalar)
	if err != nil {
		return nil, fmt.Errorf("kem: pkcs8: %w", err)
	}
	defer clear(inner)
	der, err := asn1.Marshal(pkcs8{Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidX448}, PrivateKey: inner})
	if err != nil {
		return nil, fmt.Errorf("kem: pkcs8: %w", err)
	}
	return der, nil
}
