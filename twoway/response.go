package twoway

import (
	"fmt"
	"io"

	"github.com/twoway-hsm/twoway-hsm/internal/keyschedule"
)

// responseCtx derives the key that seals a response to one request (RFC 9458
// section 4.4, and draft-ietf-ohai-chunked-ohttp-08 section 6.2 for chunked
// responses): the media type is the export label, the response nonce is
// fresh randomness, and the encapsulated key ties the response to the
// request.
type responseCtx struct {
	exp  exporter
	enc  []byte
	kdf  keyschedule.KDF
	aead keyschedule.AEAD
}

// The labels of the response key derivation, made once: converted at each
// call they would cost two allocations per response.
var (
	responseKeyLabel   = []byte("key")
	responseNonceLabel = []byte("nonce")
)

// nonceLen returns max(Nn, Nk), the length of a response nonce.
func (r *responseCtx) nonceLen() int { return max(r.aead.NonceSize, r.aead.KeySize) }

// stream derives the response AEAD and base nonce:
//
//	secret = context.Export(mediaType, max(Nn, Nk))
//	prk = Extract(enc || response_nonce, secret)
//	key = Expand(prk, "key", Nk); nonce = Expand(prk, "nonce", Nn)
func (r *responseCtx) stream(mediaType, responseNonce []byte) (*keyschedule.Stream, error) {
	secret, err := r.exp.Export(mediaType, r.nonceLen())
	if err != nil {
		return nil, fmt.Errorf("twoway: export response secret: %w", err)
	}
	defer clear(secret)
	salt := make([]byte, 0, len(r.enc)+len(responseNonce))
	salt = append(append(salt, r.enc...), responseNonce...)
	prk := r.kdf.Extract(salt, secret)
	defer clear(prk)
	kn := make([]byte, r.aead.KeySize+r.aead.NonceSize)
	key, nonce := kn[:r.aead.KeySize], kn[r.aead.KeySize:]
	defer clear(key)
	if err := r.kdf.Expand(prk, keyschedule.Expansion{Info: responseKeyLabel, Out: key}, keyschedule.Expansion{Info: responseNonceLabel, Out: nonce}); err != nil {
		return nil, err
	}
	aead, err := r.aead.New(key)
	if err != nil {
		return nil, err
	}
	return keyschedule.NewStream(aead, nonce)
}

// newSealer starts sealing a response read from pt, with a response nonce
// from rnd.
func (r *responseCtx) newSealer(rnd io.Reader, pt io.Reader, mediaType []byte, opts []Option) (*ResponseSealer, error) {
	cfg, err := newConfig(true, opts)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, r.nonceLen())
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("twoway: read response nonce: %w", err)
	}
	s, err := r.stream(mediaType, nonce)
	if err != nil {
		return nil, err
	}
	out, err := newSealedReader(nonce, pt, s, cfg)
	if err != nil {
		return nil, err
	}
	return &ResponseSealer{out}, nil
}

// newOpener starts opening a response read from ct, which begins with the
// response nonce.
func (r *responseCtx) newOpener(ct io.Reader, mediaType []byte, opts []Option) (io.Reader, error) {
	cfg, err := newConfig(false, opts)
	if err != nil {
		return nil, err
	}
	if ct == nil {
		return nil, fmt.Errorf("twoway: nil response reader")
	}
	nonce := make([]byte, r.nonceLen())
	if err := readFull(ct, nonce, "response nonce"); err != nil {
		return nil, err
	}
	s, err := r.stream(mediaType, nonce)
	if err != nil {
		return nil, err
	}
	return newOpenedReader(ct, s, cfg, len(nonce))
}

// ResponseSealer seals a response to one request. It is an io.Reader of the
// encapsulated response: the response nonce, then the sealed body, whole or
// in chunks. A ResponseSealer belongs to one message and one goroutine.
type ResponseSealer struct{ r *sealedReader }

// Read reads the encapsulated response.
func (s *ResponseSealer) Read(p []byte) (int, error) { return s.r.Read(p) }

// Len returns the number of bytes left to read, nonce included, and true;
// for a chunked response it returns 0 and false.
func (s *ResponseSealer) Len() (int, bool) { return s.r.Len() }

// HeaderLen returns the length of the response nonce that precedes the body.
func (s *ResponseSealer) HeaderLen() int { return s.r.HeaderLen() }

// MaxCiphertextChunkLen returns the longest chunk of a chunked response,
// length prefix included, and true; for an unchunked response 0 and false.
func (s *ResponseSealer) MaxCiphertextChunkLen() (int, bool) { return s.r.MaxCiphertextChunkLen() }
