// Package keyschedule is the RFC 9180 key schedule of HPKE base mode, and the
// DHKEM key derivation that precedes it, for the suites this module supports.
//
// Why this exists: both crypto/hpke and circl's hpke hide the AEAD key and
// base nonce of an HPKE context and allocate a fresh slice on every Seal and
// Open. Chunked OHTTP seals thousands of chunks per message, so twoway needs
// the context's AEAD to seal and open in place. This package derives exactly
// what RFC 9180 section 5.1 derives and nothing else; the KEMs themselves
// (encapsulation, Diffie-Hellman, ML-KEM) stay in crypto/ecdh, crypto/mlkem
// and circl. It is checked against the RFC 9180 test vectors (kept in
// internal/hpkevectors), and cross-checked against crypto/hpke and circl in
// the kem and twoway tests. Every receiver, software or hardware, goes
// through it.
package keyschedule

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
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
//
// HKDF (RFC 5869) is computed here on crypto/hmac rather than with
// crypto/hkdf, which allocates six to ten times per call: a message
// derives a dozen keys, and per-message cost matters to a gateway. The
// labelled forms feed their pieces to the HMAC without concatenating them,
// and one keyed HMAC serves every expansion from the same PRK. Both are
// checked against crypto/hkdf and the RFC 9180 vectors.
type KDF struct {
	h  func() hash.Hash
	nh int
}

// NewKDF returns the KDF for an HPKE KDF identifier.
func NewKDF(id uint16) (KDF, error) {
	switch id {
	case KDFHKDFSHA256:
		return KDF{sha256.New, sha256.Size}, nil
	case KDFHKDFSHA384:
		return KDF{sha512.New384, sha512.Size384}, nil
	case KDFHKDFSHA512:
		return KDF{sha512.New, sha512.Size}, nil
	}
	return KDF{}, fmt.Errorf("%w: 0x%04x", ErrUnsupportedKDF, id)
}

// Extract is HKDF-Extract(salt, ikm), unlabelled, as RFC 9458 uses it for
// response keys. An empty salt is Nh zero bytes, as RFC 5869 says and
// HMAC's key padding gives.
func (k KDF) Extract(salt, ikm []byte) []byte {
	mac := hmac.New(k.h, salt)
	mac.Write(ikm)
	return mac.Sum(make([]byte, 0, k.nh))
}

// An Expansion is one output of HKDF-Expand: Out is filled with
// HKDF-Expand(prk, Info, len(Out)).
type Expansion struct{ Info, Out []byte }

// Expand fills the Out of each expansion from prk, unlabelled, with one
// keyed HMAC for all of them (RFC 9458's response key and nonce come from
// one PRK).
func (k KDF) Expand(prk []byte, outs ...Expansion) error {
	e := k.newExpander(prk)
	for _, o := range outs {
		if err := e.expand(o.Out, o.Info, nil, nil, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// expander computes HKDF-Expand outputs from one PRK with one keyed HMAC.
type expander struct {
	mac   hash.Hash
	nh    int
	dirty bool     // the HMAC has been written to since New or Reset
	t     [64]byte // T(i), at most Nh = 64 bytes
	ctr   [1]byte
}

func (k KDF) newExpander(prk []byte) *expander {
	return &expander{mac: hmac.New(k.h, prk), nh: k.nh}
}

// expand fills out with HKDF-Expand(prk, a || b || c || d || e, len(out));
// the info is passed in pieces so that labelled expansions need no
// concatenation.
func (e *expander) expand(out, a, b, c, d, f []byte) error {
	if len(out) > 255*e.nh {
		return fmt.Errorf("hpke: hkdf expand length %d exceeds 255*Nh", len(out))
	}
	var prev []byte
	for i := 1; len(out) > 0; i++ {
		if e.dirty {
			e.mac.Reset()
		}
		e.dirty = true
		e.mac.Write(prev)
		e.mac.Write(a)
		e.mac.Write(b)
		e.mac.Write(c)
		e.mac.Write(d)
		e.mac.Write(f)
		e.ctr[0] = byte(i)
		e.mac.Write(e.ctr[:])
		prev = e.mac.Sum(e.t[:0])
		out = out[copy(out, prev):]
	}
	clear(e.t[:])
	return nil
}

// Labels of RFC 9180, as byte slices so that passing them to an HMAC does
// not allocate.
var (
	labelVersion      = []byte(versionLabel)
	labelEAEPRK       = []byte("eae_prk")
	labelSharedSecret = []byte("shared_secret")
	labelPSKIDHash    = []byte("psk_id_hash")
	labelInfoHash     = []byte("info_hash")
	labelSecret       = []byte("secret")
	labelKey          = []byte("key")
	labelBaseNonce    = []byte("base_nonce")
	labelExp          = []byte("exp")
	labelSec          = []byte("sec")
)

// labeledExtract is LabeledExtract(salt, label, ikm) of RFC 9180 section 4.
func (k KDF) labeledExtract(suiteID, salt, label, ikm []byte) []byte {
	mac := hmac.New(k.h, salt)
	mac.Write(labelVersion)
	mac.Write(suiteID)
	mac.Write(label)
	mac.Write(ikm)
	return mac.Sum(make([]byte, 0, k.nh))
}

// labeledExpand is LabeledExpand(prk, label, info, L) of RFC 9180 section
// 4, into out (L = len(out)).
func (e *expander) labeledExpand(out, suiteID, label, info []byte) error {
	if len(out) > 0xffff {
		return fmt.Errorf("hpke: expand length %d exceeds 65535", len(out))
	}
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(out)))
	return e.expand(out, l[:], labelVersion, suiteID, label, info)
}

// DHKEM describes a Diffie-Hellman based KEM of RFC 9180 section 4.1.
type DHKEM struct {
	kdf     KDF // Nsecret is its Nh
	suiteID [5]byte
}

// NewDHKEM returns the DHKEM for a KEM identifier: 0x0010 (P-256), 0x0011
// (P-384), 0x0012 (P-521), 0x0020 (X25519) or 0x0021 (X448).
func NewDHKEM(id uint16) (DHKEM, error) {
	var kdfID uint16
	switch id {
	case 0x0010, 0x0020:
		kdfID = KDFHKDFSHA256
	case 0x0011:
		kdfID = KDFHKDFSHA384
	case 0x0012, 0x0021:
		kdfID = KDFHKDFSHA512
	default:
		return DHKEM{}, fmt.Errorf("hpke: KEM 0x%04x is not a DHKEM", id)
	}
	kdf, _ := NewKDF(kdfID)
	d := DHKEM{kdf: kdf}
	copy(d.suiteID[:], "KEM")
	binary.BigEndian.PutUint16(d.suiteID[3:], id)
	return d, nil
}

// SharedSecret is ExtractAndExpand(dh, kem_context) with kem_context =
// enc || pkRm: the DHKEM shared secret from the raw Diffie-Hellman output.
func (d DHKEM) SharedSecret(dh, enc, pkR []byte) ([]byte, error) {
	prk := d.kdf.labeledExtract(d.suiteID[:], nil, labelEAEPRK, dh)
	defer clear(prk)
	kemContext := make([]byte, 0, len(enc)+len(pkR))
	kemContext = append(append(kemContext, enc...), pkR...)
	ss := make([]byte, d.kdf.nh)
	if err := d.kdf.newExpander(prk).labeledExpand(ss, d.suiteID[:], labelSharedSecret, kemContext); err != nil {
		return nil, err
	}
	return ss, nil
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

// Schedule is the part of KeySchedule(mode_base, ...) that depends only on
// the suite and the info string: key_schedule_context. Compute it once per
// suite and info, and derive a Context per message from it. A Schedule is
// immutable and safe for concurrent use.
type Schedule struct {
	kdf  KDF
	aead AEAD
	sid  [10]byte
	ksc  []byte
}

// pskIDHashes caches LabeledExtract("", "psk_id_hash", "") per suite: in
// base mode it depends on the suite alone.
var pskIDHashes sync.Map // [10]byte -> []byte

// NewSchedule computes key_schedule_context for base mode with info.
func NewSchedule(s Suite, info []byte) (*Schedule, error) {
	kdf, err := NewKDF(s.KDF)
	if err != nil {
		return nil, err
	}
	alg, err := LookupAEAD(s.AEAD)
	if err != nil {
		return nil, err
	}
	sc := &Schedule{kdf: kdf, aead: alg, sid: s.id()}
	sid := sc.sid[:]
	pskIDHash, ok := pskIDHashes.Load(sc.sid)
	if !ok {
		pskIDHash, _ = pskIDHashes.LoadOrStore(sc.sid, kdf.labeledExtract(sid, nil, labelPSKIDHash, nil))
	}
	infoHash := kdf.labeledExtract(sid, nil, labelInfoHash, info)
	sc.ksc = make([]byte, 0, 1+2*kdf.nh)
	sc.ksc = append(sc.ksc, 0x00) // mode_base
	sc.ksc = append(append(sc.ksc, pskIDHash.([]byte)...), infoHash...)
	return sc, nil
}

// Context is an HPKE base-mode encryption context (RFC 9180 section 5.2)
// whose Seal and Open work in place and do not allocate. A Context is for one
// message and one goroutine.
type Context struct {
	Stream
	sid            [10]byte
	kdf            KDF
	exporterSecret []byte
	exporter       *expander // keyed with exporterSecret on first Export
}

// NewContext runs KeySchedule(mode_base, sharedSecret, info, "", "") for the
// suite and returns the resulting context. The caller may zero sharedSecret
// afterwards.
func NewContext(s Suite, sharedSecret, info []byte) (*Context, error) {
	sc, err := NewSchedule(s, info)
	if err != nil {
		return nil, err
	}
	return sc.NewContext(sharedSecret)
}

// NewContext derives the context for one message from the KEM shared
// secret. The caller may zero sharedSecret afterwards.
func (sc *Schedule) NewContext(sharedSecret []byte) (*Context, error) {
	sid := sc.sid[:]
	var secretBuf, keyBuf [64]byte
	mac := hmac.New(sc.kdf.h, sharedSecret)
	mac.Write(labelVersion)
	mac.Write(sid)
	mac.Write(labelSecret)
	secret := mac.Sum(secretBuf[:0])
	defer clear(secretBuf[:])
	defer clear(keyBuf[:])

	e := sc.kdf.newExpander(secret)
	key := keyBuf[:sc.aead.KeySize]
	if err := e.labeledExpand(key, sid, labelKey, sc.ksc); err != nil {
		return nil, err
	}
	var baseNonce [maxNonceSize]byte
	if err := e.labeledExpand(baseNonce[:sc.aead.NonceSize], sid, labelBaseNonce, sc.ksc); err != nil {
		return nil, err
	}
	c := &Context{sid: sc.sid, kdf: sc.kdf, exporterSecret: make([]byte, sc.kdf.nh)}
	if err := e.labeledExpand(c.exporterSecret, sid, labelExp, sc.ksc); err != nil {
		return nil, err
	}
	aead, err := sc.aead.New(key)
	if err != nil {
		return nil, err
	}
	if err := c.Stream.init(aead, baseNonce[:sc.aead.NonceSize]); err != nil {
		return nil, err
	}
	return c, nil
}

// Export is the secret export interface of RFC 9180 section 5.3:
// LabeledExpand(exporter_secret, "sec", exporterContext, l).
func (c *Context) Export(exporterContext []byte, l int) ([]byte, error) {
	if c.exporter == nil {
		c.exporter = c.kdf.newExpander(c.exporterSecret)
	}
	out := make([]byte, l)
	if err := c.exporter.labeledExpand(out, c.sid[:], labelSec, exporterContext); err != nil {
		return nil, err
	}
	return out, nil
}
