package twoway

import (
	"io"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"
)

// RequestSender seals requests to one receiver's public key, as RFC 9458
// encapsulated requests (Chunked OHTTP with EnableChunking). It is safe for
// concurrent use when its random source is.
type RequestSender struct {
	suite  *suite
	pub    circlkem.PublicKey
	rand   io.Reader
	header []byte
}

// NewRequestSender returns a sender that seals requests with suite to the
// receiver whose public key is pubKey and whose key identifier is keyID. A
// nil randReader means crypto/rand.
func NewRequestSender(suite hpke.Suite, keyID byte, pubKey circlkem.PublicKey, randReader io.Reader) (*RequestSender, error) {
	return NewRequestSenderWithCustomSuite(AdaptCirclHPKESuite(suite), keyID, pubKey, randReader)
}

// NewRequestSenderWithCustomSuite is NewRequestSender for an HPKESuite,
// such as one that is not circl's.
func NewRequestSenderWithCustomSuite(suite HPKESuite, keyID byte, pubKey circlkem.PublicKey, randReader io.Reader) (*RequestSender, error) {
	s, err := newSuite(suite)
	if err != nil {
		return nil, err
	}
	if pubKey, err = s.checkPublicKey(pubKey); err != nil {
		return nil, err
	}
	hdr, _ := s.header(keyID).MarshalBinary()
	return &RequestSender{suite: s, pub: pubKey, rand: randOrDefault(randReader), header: hdr}, nil
}

// NewRequestSealer starts sealing the request read from pt. mediaType is
// bound into the encryption: the receiver must open with the same one.
// Unchunked, pt is read to its end now; with EnableChunking it is read as
// the sealer is read.
func (s *RequestSender) NewRequestSealer(pt io.Reader, mediaType []byte, opts ...Option) (*RequestSealer, error) {
	cfg, err := newConfig(true, opts)
	if err != nil {
		return nil, err
	}
	enc, ctx, err := s.suite.setupSender(s.pub, s.rand, info(s.header, mediaType))
	if err != nil {
		return nil, err
	}
	prefix := make([]byte, 0, len(s.header)+len(enc))
	prefix = append(append(prefix, s.header...), enc...)
	out, err := newSealedReader(prefix, pt, ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &RequestSealer{
		r:    out,
		resp: s.suite.responseCtx(ctx, enc),
	}, nil
}

// RequestSealer seals one request. It is an io.Reader of the encapsulated
// request (header, encapsulated key, sealed body), and opens the response to
// it. A RequestSealer belongs to one message and one goroutine.
type RequestSealer struct {
	r    *sealedReader
	resp *responseCtx
}

// Read reads the encapsulated request.
func (s *RequestSealer) Read(p []byte) (int, error) { return s.r.Read(p) }

// Len returns the number of bytes left to read, header included, and true;
// for a chunked request it returns 0 and false.
func (s *RequestSealer) Len() (int, bool) { return s.r.Len() }

// HeaderLen returns the length of the header and encapsulated key that
// precede the body.
func (s *RequestSealer) HeaderLen() int { return s.r.HeaderLen() }

// MaxCiphertextChunkLen returns the longest chunk of a chunked request,
// length prefix included, and true; for an unchunked request 0 and false.
func (s *RequestSealer) MaxCiphertextChunkLen() (int, bool) { return s.r.MaxCiphertextChunkLen() }

// NewResponseOpener starts opening the response to this request read from
// ct. mediaType must be the one the response was sealed with, and chunking
// must match. The response nonce is read now; the body as the opener is
// read (unchunked: now, and authenticated before this returns).
func (s *RequestSealer) NewResponseOpener(ct io.Reader, mediaType []byte, opts ...Option) (io.Reader, error) {
	return s.resp.newOpener(ct, mediaType, opts)
}
