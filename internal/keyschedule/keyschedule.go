// Package keyschedule is the RFC 9180 key schedule of HPKE base mode, and the
// DHKEM key derivation that precedes it, for the suites this module supports.
//
// Why this exists: both crypto/hpke and circl's hpke hide the AEAD key and
// base nonce of an HPKE context and allocate a fresh slice on every Seal and
// Open. Chunked OHTTP seals thousands of chunks per message, so twoway needs
// the context's AEAD to seal and open in place. This package derives exactly
// what RFC 9180 section 5.1 derives and nothing else; the KEMs themselves
// (encapsulation, Diffie-Hellman, ML-KEM) stay in crypto/ecdh, crypto/mlkem
// and circl. It is checked against the RFC 9180 test vectors in testdata/,
// and cross-checked against crypto/hpke and circl in the twoway tests. Every
// receiver, software or hardware, goes through it.
package keyschedule

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// HPKE algorithm identifiers (RFC 9180 section 7).
const (
	KDFHKDFSHA256 uint16 = 0x0001
	KDFHKDFSHA384 uint16 = 0x0002
	KDFHKDFSHA512 uint16 = 0x0003

	AEADAES128GCM        uint16 = 0x0001
	AEADAES256GCM        uint16 = 0x0002
	AEADChaCha20Poly1305 uint16 = 0x0003
)

var (
	// ErrUnsupportedKDF is returned for a KDF identifier outside HKDF-SHA256/384/512.
	ErrUnsupportedKDF = errors.New("hpke: unsupported KDF")
	// ErrUnsupportedAEAD is returned for an AEAD identifier outside AES-128-GCM,
	// AES-256-GCM and ChaCha20-Poly1305.
	ErrUnsupportedAEAD = errors.New("hpke: unsupported AEAD")
)

const versionLabel = "HPKE-v1"

// KDF is an HKDF instance of the HPKE KDF registry.
type KDF struct {
	id uint16
	h  func() hash.Hash
	nh int
}

// NewKDF returns the KDF for an HPKE KDF identifier.
func NewKDF(id uint16) (KDF, error) {
	switch id {
	case KDFHKDFSHA256:
		return KDF{id, sha256.New, sha256.Size}, nil
	case KDFHKDFSHA384:
		return KDF{id, sha512.New384, sha512.Size384}, nil
	case KDFHKDFSHA512:
		return KDF{id, sha512.New, sha512.Size}, nil
	}
	return KDF{}, fmt.Errorf("%w: 0x%04x", ErrUnsupportedKDF, id)
}

// ID returns the HPKE KDF identifier.
func (k KDF) ID() uint16 { return k.id }

// Size returns Nh, the output size of Extract.
func (k KDF) Size() int { return k.nh }

// Extract is HKDF-Extract(salt, ikm) (RFC 5869), unlabelled, as RFC 9458
// uses it for response keys.
func (k KDF) Extract(salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(k.h, ikm, salt)
	if err != nil { // only for FIPS-140 only mode with short keys
		panic("hpke: hkdf extract: " + err.Error())
	}
	return prk
}

// Expand is HKDF-Expand(prk, info, l) (RFC 5869), unlabelled.
func (k KDF) Expand(prk, info []byte, l int) ([]byte, error) {
	out, err := hkdf.Expand(k.h, prk, string(info), l)
	if err != nil {
		return nil, fmt.Errorf("hpke: hkdf expand: %w", err)
	}
	return out, nil
}

// labeledExtract is LabeledExtract(salt, label, ikm) of RFC 9180 section 4.
func (k KDF) labeledExtract(suiteID, salt []byte, label string, ikm []byte) []byte {
	in := make([]byte, 0, len(versionLabel)+len(suiteID)+len(label)+len(ikm))
	in = append(in, versionLabel...)
	in = append(in, suiteID...)
	in = append(in, label...)
	in = append(in, ikm...)
	prk := k.Extract(salt, in)
	clear(in)
	return prk
}

// labeledExpand is LabeledExpand(prk, label, info, L) of RFC 9180 section 4.
func (k KDF) labeledExpand(suiteID, prk []byte, label string, info []byte, l int) ([]byte, error) {
	if l > 0xffff {
		return nil, fmt.Errorf("hpke: expand length %d exceeds 65535", l)
	}
	in := make([]byte, 2, 2+len(versionLabel)+len(suiteID)+len(label)+len(info))
	binary.BigEndian.PutUint16(in, uint16(l))
	in = append(in, versionLabel...)
	in = append(in, suiteID...)
	in = append(in, label...)
	in = append(in, info...)
	return k.Expand(prk, in, l)
}

// DHKEM describes a Diffie-Hellman based KEM of RFC 9180 section 4.1.
type DHKEM struct {
	id      uint16
	kdf     KDF
	nsecret int
	suiteID [5]byte
}

// NewDHKEM returns the DHKEM for a KEM identifier: 0x0010 (P-256), 0x0011
// (P-384), 0x0012 (P-521), 0x0020 (X25519) or 0x0021 (X448).
func NewDHKEM(id uint16) (DHKEM, error) {
	var kdfID uint16
	var nsecret int
	switch id {
	case 0x0010, 0x0020:
		kdfID, nsecret = KDFHKDFSHA256, 32
	case 0x0011:
		kdfID, nsecret = KDFHKDFSHA384, 48
	case 0x0012, 0x0021:
		kdfID, nsecret = KDFHKDFSHA512, 64
	default:
		return DHKEM{}, fmt.Errorf("hpke: KEM 0x%04x is not a DHKEM", id)
	}
	kdf, _ := NewKDF(kdfID)
	d := DHKEM{id: id, kdf: kdf, nsecret: nsecret}
	copy(d.suiteID[:], "KEM")
	binary.BigEndian.PutUint16(d.suiteID[3:], id)
	return d, nil
}

// SharedSecret is ExtractAndExpand(dh, kem_context) with kem_context =
// enc || pkRm: the DHKEM shared secret from the raw Diffie-Hellman output.
func (d DHKEM) SharedSecret(dh, enc, pkR []byte) ([]byte, error) {
	prk := d.kdf.labeledExtract(d.suiteID[:], nil, "eae_prk", dh)
	defer clear(prk)
	kemContext := make([]byte, 0, len(enc)+len(pkR))
	kemContext = append(append(kemContext, enc...), pkR...)
	return d.kdf.labeledExpand(d.suiteID[:], prk, "shared_secret", kemContext, d.nsecret)
}

// Suite is an HPKE ciphersuite.
type Suite struct {
	KEM, KDF, AEAD uint16
}

func (s Suite) id() [10]byte {
	var id [10]byte
	copy(id[:], "HPKE")
	binary.BigEndian.PutUint16(id[4:], s.KEM)
	binary.BigEndian.PutUint16(id[6:], s.KDF)
	binary.BigEndian.PutUint16(id[8:], s.AEAD)
	return id
}

// Context is an HPKE base-mode encryption context (RFC 9180 section 5.2)
// whose Seal and Open work in place and do not allocate. A Context is for one
// message and one goroutine.
type Context struct {
	Stream
	kdf            KDF
	suiteID        [10]byte
	exporterSecret []byte
}

// NewContext runs KeySchedule(mode_base, sharedSecret, info, "", "") for the
// suite and returns the resulting context. The caller may zero sharedSecret
// afterwards.
func NewContext(s Suite, sharedSecret, info []byte) (*Context, error) {
	kdf, err := NewKDF(s.KDF)
	if err != nil {
		return nil, err
	}
	alg, err := LookupAEAD(s.AEAD)
	if err != nil {
		return nil, err
	}
	c := &Context{kdf: kdf, suiteID: s.id()}
	sid := c.suiteID[:]

	pskIDHash := kdf.labeledExtract(sid, nil, "psk_id_hash", nil)
	infoHash := kdf.labeledExtract(sid, nil, "info_hash", info)
	ksc := make([]byte, 0, 1+len(pskIDHash)+len(infoHash))
	ksc = append(ksc, 0x00) // mode_base
	ksc = append(append(ksc, pskIDHash...), infoHash...)

	secret := kdf.labeledExtract(sid, sharedSecret, "secret", nil)
	defer clear(secret)
	key, err := kdf.labeledExpand(sid, secret, "key", ksc, alg.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	baseNonce, err := kdf.labeledExpand(sid, secret, "base_nonce", ksc, alg.NonceSize)
	if err != nil {
		return nil, err
	}
	if c.exporterSecret, err = kdf.labeledExpand(sid, secret, "exp", ksc, kdf.nh); err != nil {
		return nil, err
	}
	aead, err := alg.New(key)
	if err != nil {
		return nil, err
	}
	if err := c.Stream.init(aead, baseNonce); err != nil {
		return nil, err
	}
	return c, nil
}

// Export is the secret export interface of RFC 9180 section 5.3:
// LabeledExpand(exporter_secret, "sec", exporterContext, l).
func (c *Context) Export(exporterContext []byte, l int) ([]byte, error) {
	return c.kdf.labeledExpand(c.suiteID[:], c.exporterSecret, "sec", exporterContext, l)
}

// ExporterSecret returns the context's exporter_secret, for tests against
// the RFC 9180 vectors.
func (c *Context) ExporterSecret() []byte { return c.exporterSecret }
