package kem

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
)

// Software key files. Keys on the NIST curves and X25519 are written as
// PKCS#8 ("PRIVATE KEY"), which OpenSSL and every HSM import tool read; the
// other KEMs, which PKCS#8 has no standard form for, as an "HPKE PRIVATE
// KEY" block whose KEM header names the KEM and whose body is HPKE's
// SerializePrivateKey.

const hpkePEMType = "HPKE PRIVATE KEY"

// MarshalPrivateKeyPEM encodes a software key as a PEM key file.
func MarshalPrivateKeyPEM(k PrivateKey) ([]byte, error) {
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
