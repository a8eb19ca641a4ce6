package twoway

import (
	"encoding/binary"
	"fmt"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/internal/keyschedule"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// RequestHeader is the header that starts every request (RFC 9458 section
// 4.3): the key identifier and the HPKE suite the request was sealed with.
type RequestHeader struct {
	KeyID  byte
	KemID  hpke.KEM
	KDFID  hpke.KDF
	AEADID hpke.AEAD
}

// BinaryRequestHeaderLen is the length of an encoded RequestHeader.
const BinaryRequestHeaderLen = 1 + 2 + 2 + 2

// NewRequestHeaderForSuite returns the header for requests sealed with suite
// to the key keyID.
func NewRequestHeaderForSuite(suite HPKESuite, keyID byte) RequestHeader {
	kemID, kdfID, aeadID := suite.Params()
	return RequestHeader{KeyID: keyID, KemID: kemID, KDFID: kdfID, AEADID: aeadID}
}

// ParseRequestHeaderFrom parses the header at the start of ct without
// modifying ct. Use it to choose a key or suite before opening a request.
// It fails for a short input and for KEM, KDF or AEAD identifiers this
// package does not implement.
func ParseRequestHeaderFrom(ct []byte) (RequestHeader, error) {
	var h RequestHeader
	err := h.UnmarshalBinary(ct)
	return h, err
}

// MarshalBinary encodes the header: key_id (1 byte), kem_id, kdf_id, aead_id
// (2 bytes each, big-endian).
func (h RequestHeader) MarshalBinary() ([]byte, error) {
	return h.appendBinary(make([]byte, 0, BinaryRequestHeaderLen)), nil
}

func (h RequestHeader) appendBinary(b []byte) []byte {
	b = append(b, h.KeyID)
	b = binary.BigEndian.AppendUint16(b, uint16(h.KemID))
	b = binary.BigEndian.AppendUint16(b, uint16(h.KDFID))
	return binary.BigEndian.AppendUint16(b, uint16(h.AEADID))
}

// UnmarshalBinary decodes a header from the first BinaryRequestHeaderLen
// bytes of b; bytes after them are ignored (they are the encapsulated key).
func (h *RequestHeader) UnmarshalBinary(b []byte) error {
	if len(b) < BinaryRequestHeaderLen {
		return fmt.Errorf("twoway: request header: %d bytes, want %d: %w", len(b), BinaryRequestHeaderLen, ErrMalformed)
	}
	v := RequestHeader{
		KeyID:  b[0],
		KemID:  hpke.KEM(binary.BigEndian.Uint16(b[1:3])),
		KDFID:  hpke.KDF(binary.BigEndian.Uint16(b[3:5])),
		AEADID: hpke.AEAD(binary.BigEndian.Uint16(b[5:7])),
	}
	if err := checkSuiteIDs(v.KemID, v.KDFID, v.AEADID); err != nil {
		return fmt.Errorf("twoway: request header: %w", err)
	}
	*h = v
	return nil
}

// String describes the header for error messages and logs.
func (h RequestHeader) String() string {
	return fmt.Sprintf("key id %d, %v, %s, %s", h.KeyID, kem.ID(h.KemID), kdfName(h.KDFID), aeadName(h.AEADID))
}

// checkSuiteIDs reports whether this package implements the three algorithms.
func checkSuiteIDs(kemID hpke.KEM, kdfID hpke.KDF, aeadID hpke.AEAD) error {
	if !kemSupported(kemID) {
		return fmt.Errorf("%w: KEM 0x%04x", ErrUnsupportedSuite, uint16(kemID))
	}
	if _, err := keyschedule.NewKDF(uint16(kdfID)); err != nil {
		return fmt.Errorf("%w: KDF 0x%04x", ErrUnsupportedSuite, uint16(kdfID))
	}
	if _, err := keyschedule.LookupAEAD(uint16(aeadID)); err != nil {
		return fmt.Errorf("%w: AEAD 0x%04x", ErrUnsupportedSuite, uint16(aeadID))
	}
	return nil
}

// kemSupported reports whether a KEM is usable by senders (circl) or by
// receivers (this module's kem package).
func kemSupported(id hpke.KEM) bool {
	return id.IsValid() || kem.ID(id).Supported()
}

func kdfName(id hpke.KDF) string {
	switch id {
	case hpke.KDF_HKDF_SHA256:
		return "HKDF-SHA256"
	case hpke.KDF_HKDF_SHA384:
		return "HKDF-SHA384"
	case hpke.KDF_HKDF_SHA512:
		return "HKDF-SHA512"
	}
	return fmt.Sprintf("KDF(0x%04x)", uint16(id))
}

func aeadName(id hpke.AEAD) string {
	switch id {
	case hpke.AEAD_AES128GCM:
		return "AES-128-GCM"
	case hpke.AEAD_AES256GCM:
		return "AES-256-GCM"
	case hpke.AEAD_ChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("AEAD(0x%04x)", uint16(id))
}

// info is the HPKE info of a request: the media type, a zero byte, and the
// encoded header (RFC 9458 section 4.3).
func info(hdr, mediaType []byte) []byte {
	b := make([]byte, 0, len(mediaType)+1+len(hdr))
	b = append(b, mediaType...)
	b = append(b, 0)
	return append(b, hdr...)
}
