package keyschedule

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrSequenceOverflow is returned when a Stream would reuse a nonce.
var ErrSequenceOverflow = errors.New("hpke: message limit reached (sequence number overflow)")

// ErrOpen is returned when a ciphertext fails authentication.
var ErrOpen = errors.New("hpke: message authentication failed")

const maxNonceSize = 12

// AEAD describes an AEAD of the HPKE AEAD registry.
type AEAD struct {
	ID        uint16
	KeySize   int // Nk
	NonceSize int // Nn
	Overhead  int // Nt
}

// LookupAEAD returns the parameters of an HPKE AEAD identifier.
func LookupAEAD(id uint16) (AEAD, error) {
	switch id {
	case AEADAES128GCM:
		return AEAD{id, 16, 12, 16}, nil
	case AEADAES256GCM:
		return AEAD{id, 32, 12, 16}, nil
	case AEADChaCha20Poly1305:
		return AEAD{id, 32, 12, 16}, nil
	}
	return AEAD{}, fmt.Errorf("%w: 0x%04x", ErrUnsupportedAEAD, id)
}

// New returns the cipher for key. AES-GCM accepts 16, 24 or 32-byte keys
// whatever the identifier says, which the one-to-many format relies on.
func (a AEAD) New(key []byte) (cipher.AEAD, error) {
	switch a.ID {
	case AEADAES128GCM, AEADAES256GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("hpke: aes: %w", err)
		}
		return cipher.NewGCM(b)
	case AEADChaCha20Poly1305:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedAEAD, a.ID)
}

// Stream is an AEAD with a base nonce and a sequence number: message i is
// sealed with nonce base XOR I2OSP(i, Nn). HPKE contexts (RFC 9180 section
// 5.2) and chunked OHTTP responses both use this construction. Seal and
// Open work in place when dst is the input's [:0] and do not allocate when
// dst has room. A Stream is for one message and one goroutine.
type Stream struct {
	aead  cipher.AEAD
	base  [maxNonceSize]byte
	nonce [maxNonceSize]byte
	nn    int
	seq   uint64
}

// NewStream returns a Stream over aead starting at sequence number 0.
func NewStream(aead cipher.AEAD, baseNonce []byte) (*Stream, error) {
	s := new(Stream)
	if err := s.init(aead, baseNonce); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stream) init(aead cipher.AEAD, baseNonce []byte) error {
	if len(baseNonce) != aead.NonceSize() || len(baseNonce) > maxNonceSize || len(baseNonce) < 8 {
		return fmt.Errorf("hpke: base nonce of %d bytes for an AEAD with %d-byte nonces", len(baseNonce), aead.NonceSize())
	}
	s.aead = aead
	s.nn = len(baseNonce)
	copy(s.base[:], baseNonce)
	return nil
}

// Overhead returns Nt, the length of the authentication tag.
func (s *Stream) Overhead() int { return s.aead.Overhead() }

func (s *Stream) computeNonce() []byte {
	n := s.nonce[:s.nn]
	copy(n, s.base[:s.nn])
	seq := s.seq
	for i := s.nn - 1; i >= s.nn-8; i-- {
		n[i] ^= byte(seq)
		seq >>= 8
	}
	return n
}

// Seal seals pt with aad under the next nonce and appends the result to dst.
func (s *Stream) Seal(dst, pt, aad []byte) ([]byte, error) {
	if s.seq == math.MaxUint64 {
		return nil, ErrSequenceOverflow
	}
	out := s.aead.Seal(dst, s.computeNonce(), pt, aad)
	s.seq++
	return out, nil
}

// Open opens ct with aad under the next nonce and appends the plaintext to
// dst. The sequence number advances only on success.
func (s *Stream) Open(dst, ct, aad []byte) ([]byte, error) {
	if s.seq == math.MaxUint64 {
		return nil, ErrSequenceOverflow
	}
	out, err := s.aead.Open(dst, s.computeNonce(), ct, aad)
	if err != nil {
		return nil, ErrOpen
	}
	s.seq++
	return out, nil
}
