package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Format and Version identify the evidence format (see the package
// documentation). A verifier refuses any other version: a new version is a
// new format.
const (
	Format  = "twoway-hsm/tpm2-key-evidence"
	Version = 1
)

// MediaType is the media type of evidence documents.
const MediaType = "application/vnd.twoway-hsm.tpm2-key-evidence+json"

// Limits of the parser.
const (
	// MaxEvidenceSize bounds an evidence document.
	MaxEvidenceSize = 64 << 10
	// MaxNonceSize bounds a nonce.
	MaxNonceSize = 64
	// MaxEKChain bounds the intermediate certificates evidence carries.
	MaxEKChain = 8
	// maxField bounds one binary field (a certificate, a public area).
	maxField = 8 << 10
)

// QualifyingDataLabel is the domain-separation label of the qualifying
// data (see QualifyingData).
const QualifyingDataLabel = "twoway-hsm tpm2 key attestation v1"

// Evidence is the evidence for one TPM key: the EK certificate and public
// area, the AK's public area, TPM2_Certify of the key by the AK, and the
// key's public area and key configuration. Binary fields are TPM 2.0
// structures in their TPM wire encoding (TPM 2.0 Part 2) and X.509 DER.
type Evidence struct {
	// KeyConfig is the key's RFC 9458 key configuration (one KeyConfig,
	// as twoway.KeyConfig.MarshalBinary encodes it, without the 2-byte
	// length of the application/ohttp-keys list).
	KeyConfig []byte
	// Nonce is the verifier's nonce the evidence was made for; nil for
	// none.
	Nonce []byte
	// EKCert is the EK certificate (DER) from the TPM's NV.
	EKCert []byte
	// EKChain holds intermediate certificates (DER): those the TPM keeps
	// in NV and those the operator added. They are untrusted: the chain
	// is built from the verifier's roots.
	EKChain [][]byte
	// EKPublic is the EK's TPMT_PUBLIC.
	EKPublic []byte
	// AKPublic is the attestation key's TPMT_PUBLIC.
	AKPublic []byte
	// KeyPublic is the HPKE key's TPMT_PUBLIC.
	KeyPublic []byte
	// CertInfo is the TPMS_ATTEST of TPM2_Certify, which the AK signed.
	CertInfo []byte
	// Signature is the AK's TPMT_SIGNATURE over CertInfo.
	Signature []byte
}

// QualifyingData returns what the evidence's TPM2_Certify must carry as
// qualifying data (extraData) for a key configuration and a nonce:
//
//	SHA-256(label || 0x00 || uint16(len(keyConfig)) || keyConfig || uint16(len(nonce)) || nonce)
//
// with label [QualifyingDataLabel] and lengths big-endian, so that no two
// (keyConfig, nonce) pairs share an input.
func QualifyingData(keyConfig, nonce []byte) []byte {
	h := sha256.New()
	h.Write([]byte(QualifyingDataLabel))
	h.Write([]byte{0})
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(keyConfig)))
	h.Write(n[:])
	h.Write(keyConfig)
	binary.BigEndian.PutUint16(n[:], uint16(len(nonce)))
	h.Write(n[:])
	h.Write(nonce)
	return h.Sum(nil)
}

// evidenceJSON is the wire form.
type evidenceJSON struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	KeyConfig b64    `json:"key_config"`
	Nonce     *b64   `json:"nonce,omitempty"`
	EKCert    b64    `json:"ek_cert"`
	EKChain   []b64  `json:"ek_chain,omitempty"`
	EKPublic  b64    `json:"ek_public"`
	AKPublic  b64    `json:"ak_public"`
	KeyPublic b64    `json:"key_public"`
	CertInfo  b64    `json:"cert_info"`
	Signature b64    `json:"signature"`
}

// MarshalJSON encodes the evidence in its documented JSON form.
func (e *Evidence) MarshalJSON() ([]byte, error) {
	w := evidenceJSON{
		Format: Format, Version: Version,
		KeyConfig: e.KeyConfig, EKCert: e.EKCert, EKPublic: e.EKPublic,
		AKPublic: e.AKPublic, KeyPublic: e.KeyPublic, CertInfo: e.CertInfo, Signature: e.Signature,
	}
	if e.Nonce != nil {
		n := b64(e.Nonce)
		w.Nonce = &n
	}
	for _, c := range e.EKChain {
		w.EKChain = append(w.EKChain, c)
	}
	return json.Marshal(w)
}

// Marshal returns the evidence document, indented, with a final newline.
func (e *Evidence) Marshal() ([]byte, error) {
	b, err := e.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// ParseEvidence parses an evidence document strictly: one JSON object of
// at most MaxEvidenceSize bytes, with "format" and "version" first
// checked, every other member known, none repeated, every required one
// present, base64 in its standard padded form with nothing ignored
// (no line breaks), and nothing after the object. It checks the shape of
// the fields, not what they say: that is Verify's job. Errors wrap
// [ErrMalformed] or [ErrUnsupportedVersion] and name the field.
func ParseEvidence(b []byte) (*Evidence, error) {
	if len(b) > MaxEvidenceSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxEvidenceSize)
	}
	var w evidenceJSON
	if err := strictDecode(b, Format, Version, &w); err != nil {
		return nil, err
	}
	e := &Evidence{
		KeyConfig: w.KeyConfig, EKCert: w.EKCert, EKPublic: w.EKPublic, AKPublic: w.AKPublic,
		KeyPublic: w.KeyPublic, CertInfo: w.CertInfo, Signature: w.Signature,
	}
	for name, f := range map[string][]byte{
		"key_config": e.KeyConfig, "ek_cert": e.EKCert, "ek_public": e.EKPublic, "ak_public": e.AKPublic,
		"key_public": e.KeyPublic, "cert_info": e.CertInfo, "signature": e.Signature,
	} {
		if len(f) == 0 {
			return nil, fmt.Errorf("%w: %s: missing or empty", ErrMalformed, name)
		}
		if len(f) > maxField {
			return nil, fmt.Errorf("%w: %s: %d bytes, more than %d", ErrMalformed, name, len(f), maxField)
		}
	}
	if w.Nonce != nil {
		if len(*w.Nonce) == 0 || len(*w.Nonce) > MaxNonceSize {
			return nil, fmt.Errorf("%w: nonce: %d bytes, want 1 to %d", ErrMalformed, len(*w.Nonce), MaxNonceSize)
		}
		e.Nonce = *w.Nonce
	}
	if len(w.EKChain) > MaxEKChain {
		return nil, fmt.Errorf("%w: ek_chain: %d certificates, more than %d", ErrMalformed, len(w.EKChain), MaxEKChain)
	}
	for i, c := range w.EKChain {
		if len(c) == 0 || len(c) > maxField {
			return nil, fmt.Errorf("%w: ek_chain[%d]: %d bytes", ErrMalformed, i, len(c))
		}
		e.EKChain = append(e.EKChain, c)
	}
	var kc twoway.KeyConfig
	if err := kc.UnmarshalBinary(e.KeyConfig); err != nil {
		return nil, fmt.Errorf("%w: key_config: %w", ErrMalformed, err)
	}
	return e, nil
}

// b64 is a byte string in standard, padded base64, decoded strictly.
type b64 []byte

func (b b64) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.StdEncoding.EncodeToString(b))
}

func (b *b64) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("want a base64 string: %w", err)
	}
	if strings.ContainsAny(s, "\r\n") {
		return errors.New("base64 with a line break")
	}
	v, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return fmt.Errorf("bad base64: %w", err)
	}
	*b = v
	return nil
}

// strictDecode decodes b, one JSON object, into v strictly: no member
// repeated (in any object) or unknown, nothing after it. Its "version"
// (and, when format is not "", its "format") is checked first, so that a
// document of another version is reported as ErrUnsupportedVersion and
// not as one with unknown members. Callers bound b's size.
func strictDecode(b []byte, format string, version int, v any) error {
	if err := checkJSON(b); err != nil {
		return err
	}
	var head struct {
		Format  *string `json:"format"`
		Version *int    `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case format != "" && head.Format == nil:
		return fmt.Errorf("%w: no \"format\" member", ErrMalformed)
	case format != "" && *head.Format != format:
		return fmt.Errorf("%w: format %q, want %q", ErrMalformed, *head.Format, format)
	case head.Version == nil:
		return fmt.Errorf("%w: no \"version\" member", ErrMalformed)
	case *head.Version != version:
		return fmt.Errorf("%w: version %d; this reader reads version %d", ErrUnsupportedVersion, *head.Version, version)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// checkJSON checks that b is one JSON value with no member repeated in
// any object (encoding/json keeps the last of repeated members, so two
// readers could disagree on what a document says).
func checkJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := walkJSON(d, 0); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON value", ErrMalformed)
	}
	return nil
}

func walkJSON(d *json.Decoder, depth int) error {
	if depth > 8 {
		return errors.New("JSON nested too deeply")
	}
	t, err := d.Token()
	if err != nil {
		return err
	}
	switch t {
	case json.Delim('{'):
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return err
			}
			ks := k.(string)
			if seen[ks] {
				return fmt.Errorf("member %q repeated", ks)
			}
			seen[ks] = true
			if err := walkJSON(d, depth+1); err != nil {
				return err
			}
		}
		_, err = d.Token()
		return err
	case json.Delim('['):
		for d.More() {
			if err := walkJSON(d, depth+1); err != nil {
				return err
			}
		}
		_, err = d.Token()
		return err
	}
	return nil
}
