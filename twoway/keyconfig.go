package twoway

import (
	"encoding/binary"
	"fmt"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// KeyConfigMediaType is the media type of a list of key configurations
// (RFC 9458 section 3.2), what a gateway publishes for its clients.
const KeyConfigMediaType = "application/ohttp-keys"

// SymmetricSuite is a KDF and AEAD pair that a key configuration offers.
type SymmetricSuite struct {
	KDF  hpke.KDF
	AEAD hpke.AEAD
}

// KeyConfig is an OHTTP key configuration (RFC 9458 section 3.1): a key
// identifier, a KEM and its public key, and the symmetric algorithms the
// gateway accepts with that key.
type KeyConfig struct {
	KeyID     byte
	KEM       hpke.KEM
	PublicKey []byte
	Suites    []SymmetricSuite
}

// Validate reports whether the configuration can be encoded: a supported
// KEM, a public key of that KEM's length, and 1 to 16383 supported suites.
func (c KeyConfig) Validate() error {
	id := kem.ID(c.KEM)
	if !id.Supported() {
		return fmt.Errorf("twoway: key config %d: %w: KEM 0x%04x", c.KeyID, ErrUnsupportedSuite, uint16(c.KEM))
	}
	if len(c.PublicKey) != id.PublicKeySize() {
		return fmt.Errorf("twoway: key config %d: public key of %d bytes, %v needs %d", c.KeyID, len(c.PublicKey), id, id.PublicKeySize())
	}
	if len(c.Suites) == 0 || len(c.Suites) > 0xfffc/4 {
		return fmt.Errorf("twoway: key config %d: %d symmetric suites, want 1 to %d", c.KeyID, len(c.Suites), 0xfffc/4)
	}
	for _, s := range c.Suites {
		if err := checkSuiteIDs(c.KEM, s.KDF, s.AEAD); err != nil {
			return fmt.Errorf("twoway: key config %d: %w", c.KeyID, err)
		}
	}
	return nil
}

// MarshalBinary encodes the configuration in the RFC 9458 wire format.
func (c KeyConfig) MarshalBinary() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c.appendBinary(nil), nil
}

func (c KeyConfig) encodedLen() int { return 1 + 2 + len(c.PublicKey) + 2 + 4*len(c.Suites) }

func (c KeyConfig) appendBinary(b []byte) []byte {
	b = append(b, c.KeyID)
	b = binary.BigEndian.AppendUint16(b, uint16(c.KEM))
	b = append(b, c.PublicKey...)
	b = binary.BigEndian.AppendUint16(b, uint16(4*len(c.Suites)))
	for _, s := range c.Suites {
		b = binary.BigEndian.AppendUint16(b, uint16(s.KDF))
		b = binary.BigEndian.AppendUint16(b, uint16(s.AEAD))
	}
	return b
}

// UnmarshalBinary decodes exactly one configuration; trailing bytes, a
// public key of the wrong length, an empty or ragged suite list and
// unsupported algorithms are errors.
func (c *KeyConfig) UnmarshalBinary(b []byte) error {
	v, rest, err := parseKeyConfig(b)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("twoway: key config: %d trailing bytes: %w", len(rest), ErrMalformed)
	}
	*c = v
	return nil
}

func parseKeyConfig(b []byte) (KeyConfig, []byte, error) {
	var c KeyConfig
	if len(b) < 3 {
		return c, nil, fmt.Errorf("twoway: key config: %d bytes, too short for a key id and KEM: %w", len(b), ErrMalformed)
	}
	c.KeyID = b[0]
	c.KEM = hpke.KEM(binary.BigEndian.Uint16(b[1:3]))
	id := kem.ID(c.KEM)
	if !id.Supported() {
		return c, nil, fmt.Errorf("twoway: key config %d: %w: KEM 0x%04x", c.KeyID, ErrUnsupportedSuite, uint16(c.KEM))
	}
	b = b[3:]
	npk := id.PublicKeySize()
	if len(b) < npk+2 {
		return c, nil, fmt.Errorf("twoway: key config %d: truncated public key (%v needs %d bytes): %w", c.KeyID, id, npk, ErrMalformed)
	}
	c.PublicKey = append([]byte(nil), b[:npk]...)
	b = b[npk:]
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n < 4 || n%4 != 0 {
		return c, nil, fmt.Errorf("twoway: key config %d: symmetric algorithms length %d is not a positive multiple of 4: %w", c.KeyID, n, ErrMalformed)
	}
	if len(b) < n {
		return c, nil, fmt.Errorf("twoway: key config %d: symmetric algorithms truncated (%d of %d bytes): %w", c.KeyID, len(b), n, ErrMalformed)
	}
	for i := 0; i < n; i += 4 {
		s := SymmetricSuite{
			KDF:  hpke.KDF(binary.BigEndian.Uint16(b[i:])),
			AEAD: hpke.AEAD(binary.BigEndian.Uint16(b[i+2:])),
		}
		if err := checkSuiteIDs(c.KEM, s.KDF, s.AEAD); err != nil {
			return c, nil, fmt.Errorf("twoway: key config %d: %w", c.KeyID, err)
		}
		c.Suites = append(c.Suites, s)
	}
	return c, b[n:], nil
}

// MarshalKeyConfigs encodes an application/ohttp-keys body: each
// configuration prefixed by its 2-byte length (RFC 9458 section 3.2).
func MarshalKeyConfigs(configs []KeyConfig) ([]byte, error) {
	if len(configs) == 0 {
		return nil, fmt.Errorf("twoway: no key configs to encode")
	}
	var b []byte
	for _, c := range configs {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		n := c.encodedLen()
		if n > 0xffff {
			return nil, fmt.Errorf("twoway: key config %d: %d bytes, too long to encode", c.KeyID, n)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = c.appendBinary(b)
	}
	return b, nil
}

// ParseKeyConfigs decodes an application/ohttp-keys body. Every
// configuration must be well formed and use supported algorithms; an empty
// body is an error.
func ParseKeyConfigs(b []byte) ([]KeyConfig, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("twoway: key configs: empty body: %w", ErrMalformed)
	}
	var out []KeyConfig
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("twoway: key configs: 1 stray byte after config %d: %w", len(out), ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > len(b) {
			return nil, fmt.Errorf("twoway: key configs: config %d claims %d bytes, %d remain: %w", len(out), n, len(b), ErrMalformed)
		}
		var c KeyConfig
		if err := c.UnmarshalBinary(b[:n]); err != nil {
			return nil, fmt.Errorf("twoway: key configs: config %d: %w", len(out), err)
		}
		out = append(out, c)
		b = b[n:]
	}
	return out, nil
}
