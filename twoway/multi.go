package twoway

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/internal/keyschedule"
)

// multiKeyAAD is the AAD that seals a one-to-many message key to a receiver.
var multiKeyAAD = []byte("multi-encap-key")

// multiKeyLen is the length of a one-to-many message key. With AES-128-GCM
// suites the body is therefore sealed with AES-256-GCM, as in the format of
// github.com/openpcc/twoway that this package keeps byte for byte.
const multiKeyLen = 32

// MultiRequestSender seals requests that several receivers can open: the
// body is sealed once under a random key, and EncapsulateKey wraps that key
// for each receiver with HPKE. Each receiver answers with its own response,
// bound to the request and to its key. This format is not OHTTP.
//
// A MultiRequestSender is safe for concurrent use when its random source is.
type MultiRequestSender struct {
	suite    *suite
	suiteErr error
	rand     io.Reader
}

// NewMultiRequestSender returns a one-to-many sender for suite. A nil
// randReader means crypto/rand.
func NewMultiRequestSender(suite hpke.Suite, randReader io.Reader) *MultiRequestSender {
	return NewMultiRequestSenderWithCustomSuite(AdaptCirclHPKESuite(suite), randReader)
}

// NewMultiRequestSenderWithCustomSuite is NewMultiRequestSender for an
// HPKESuite. An unusable suite is reported by NewRequestSealer.
func NewMultiRequestSenderWithCustomSuite(suite HPKESuite, randReader io.Reader) *MultiRequestSender {
	s, err := newSuite(suite)
	return &MultiRequestSender{suite: s, suiteErr: err, rand: randOrDefault(randReader)}
}

// NewRequestSealer generates a message key and starts sealing the request
// read from pt with it. mediaType is bound into every receiver's key
// encapsulation and must match when opening.
func (s *MultiRequestSender) NewRequestSealer(pt io.Reader, mediaType []byte, opts ...Option) (*MultiRequestSealer, error) {
	if s.suiteErr != nil {
		return nil, s.suiteErr
	}
	cfg, err := newConfig(true, opts)
	if err != nil {
		return nil, err
	}
	key := make([]byte, multiKeyLen)
	if _, err := io.ReadFull(s.rand, key); err != nil {
		return nil, fmt.Errorf("twoway: read message key: %w", err)
	}
	nonce := make([]byte, s.suite.aead.NonceSize)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("twoway: read body nonce: %w", err)
	}
	stream, err := multiBodyStream(s.suite.aead, key, nonce)
	if err != nil {
		return nil, err
	}
	out, err := newSealedReader(nonce, pt, stream, cfg)
	if err != nil {
		return nil, err
	}
	return &MultiRequestSealer{sender: s, key: key, mediaType: bytes.Clone(mediaType), r: out}, nil
}

// multiBodyStream returns the AEAD stream of a one-to-many body: the suite's
// AEAD keyed with the message key, from the body's base nonce.
func multiBodyStream(a keyschedule.AEAD, key, nonce []byte) (*keyschedule.Stream, error) {
	aead, err := a.New(key)
	if err != nil {
		return nil, err
	}
	return keyschedule.NewStream(aead, nonce)
}

// MultiRequestSealer seals one request for several receivers. It is an
// io.Reader of the sealed body (nonce, then the body, whole or in chunks);
// EncapsulateKey produces what each receiver needs besides. A
// MultiRequestSealer belongs to one message and one goroutine.
type MultiRequestSealer struct {
	sender    *MultiRequestSender
	key       []byte
	mediaType []byte
	r         *sealedReader
}

// Read reads the sealed body.
func (s *MultiRequestSealer) Read(p []byte) (int, error) { return s.r.Read(p) }

// Len returns the number of bytes left to read, nonce included, and true;
// for a chunked request it returns 0 and false.
func (s *MultiRequestSealer) Len() (int, bool) { return s.r.Len() }

// HeaderLen returns the length of the nonce that precedes the body.
func (s *MultiRequestSealer) HeaderLen() int { return s.r.HeaderLen() }

// MaxCiphertextChunkLen returns the longest chunk of a chunked request,
// length prefix included, and true; for an unchunked request 0 and false.
func (s *MultiRequestSealer) MaxCiphertextChunkLen() (int, bool) { return s.r.MaxCiphertextChunkLen() }

// ResponseOpenerFunc opens the response of one receiver of a one-to-many
// request.
type ResponseOpenerFunc func(ct io.Reader, mediaType []byte, opts ...Option) (io.Reader, error)

// EncapsulateKey wraps the message key for the receiver with key identifier
// keyID and public key pubKey. It returns the encapsulated key to send that
// receiver (header, HPKE encapsulated key, sealed message key) and the
// function that opens that receiver's response.
func (s *MultiRequestSealer) EncapsulateKey(keyID byte, pubKey circlkem.PublicKey) ([]byte, ResponseOpenerFunc, error) {
	st := s.sender.suite
	pubKey, err := st.checkPublicKey(pubKey)
	if err != nil {
		return nil, nil, err
	}
	hdr, _ := st.header(keyID).MarshalBinary()
	enc, ctx, err := st.setupSender(pubKey, s.sender.rand, info(hdr, s.mediaType))
	if err != nil {
		return nil, nil, err
	}
	out := make([]byte, 0, len(hdr)+len(enc)+len(s.key)+ctx.Overhead())
	out = append(append(out, hdr...), enc...)
	if out, err = ctx.Seal(out, s.key, multiKeyAAD); err != nil {
		return nil, nil, fmt.Errorf("twoway: seal message key: %w", err)
	}
	resp := st.responseCtx(ctx, enc)
	return out, func(ct io.Reader, mediaType []byte, opts ...Option) (io.Reader, error) {
		return resp.newOpener(ct, mediaType, opts)
	}, nil
}

// MultiRequestReceiver opens one-to-many requests with one key, and seals
// the responses to them. It is safe for concurrent use when its random
// source and key are.
type MultiRequestReceiver struct{ receiverBase }

// NewMultiRequestReceiver returns a one-to-many receiver for requests
// sealed with suite to the key keyID whose private key is privKey. A nil
// randReader means crypto/rand.
func NewMultiRequestReceiver(suite hpke.Suite, keyID byte, privKey circlkem.PrivateKey, randReader io.Reader) (*MultiRequestReceiver, error) {
	return NewMultiRequestReceiverWithCustomSuite(AdaptCirclHPKESuite(suite), keyID, privKey, randReader)
}

// NewMultiRequestReceiverWithCustomSuite is NewMultiRequestReceiver for an
// HPKESuite.
func NewMultiRequestReceiverWithCustomSuite(suite HPKESuite, keyID byte, privKey circlkem.PrivateKey, randReader io.Reader) (*MultiRequestReceiver, error) {
	s, k, err := newCirclReceiver(suite, privKey)
	if err != nil {
		return nil, err
	}
	return newMultiRequestReceiver(s, keyID, k, randReader), nil
}

func newMultiRequestReceiver(s *suite, keyID byte, k receiverKey, rnd io.Reader) *MultiRequestReceiver {
	return &MultiRequestReceiver{newReceiverBase(s, keyID, k, rnd)}
}

// NewRequestOpener unwraps the message key from encapKey (as produced by
// EncapsulateKey for this receiver) and starts opening the body read from
// ct. mediaType and chunking must match the sealer's.
func (r *MultiRequestReceiver) NewRequestOpener(encapKey []byte, ct io.Reader, mediaType []byte, opts ...Option) (*RequestOpener, error) {
	return r.NewRequestOpenerContext(context.Background(), encapKey, ct, mediaType, opts...)
}

// NewRequestOpenerContext is NewRequestOpener with a context that bounds the
// wait for the private key.
func (r *MultiRequestReceiver) NewRequestOpenerContext(ctx context.Context, encapKey []byte, ct io.Reader, mediaType []byte, opts ...Option) (*RequestOpener, error) {
	cfg, h, err := parseEncapKeyHeader(encapKey, ct, opts)
	if err != nil {
		return nil, err
	}
	if h != r.header {
		return nil, mismatch(h, r.header)
	}
	return r.openMulti(ctx, encapKey, ct, mediaType, cfg)
}

// parseEncapKeyHeader applies an opener's options and parses the header
// at the start of a one-to-many encapsulated key.
func parseEncapKeyHeader(encapKey []byte, ct io.Reader, opts []Option) (*opConfig, RequestHeader, error) {
	cfg, err := newConfig(false, opts)
	if err != nil {
		return nil, RequestHeader{}, err
	}
	if ct == nil {
		return nil, RequestHeader{}, fmt.Errorf("twoway: nil request reader")
	}
	h, err := ParseRequestHeaderFrom(encapKey)
	if err != nil {
		return nil, RequestHeader{}, fmt.Errorf("twoway: encapsulated key: %w", err)
	}
	return cfg, h, nil
}

// openMulti opens a one-to-many request whose encapsulated key's header
// has been checked.
func (r *receiverBase) openMulti(ctx context.Context, encapKey []byte, ct io.Reader, mediaType []byte, cfg *opConfig) (*RequestOpener, error) {
	want := BinaryRequestHeaderLen + r.suite.nenc + multiKeyLen + r.suite.aead.Overhead
	if len(encapKey) != want {
		return nil, fmt.Errorf("%w: encapsulated key of %d bytes, want %d", ErrMalformed, len(encapKey), want)
	}
	enc := bytes.Clone(encapKey[BinaryRequestHeaderLen : BinaryRequestHeaderLen+r.suite.nenc])
	sealedKey := encapKey[BinaryRequestHeaderLen+r.suite.nenc:]
	rctx, err := r.suite.setupReceiver(ctx, &r.key, enc, info(r.hdr, mediaType))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, r.suite.aead.NonceSize)
	if err := readFull(ct, nonce, "body nonce"); err != nil {
		return nil, err
	}
	key, err := rctx.Open(nil, sealedKey, multiKeyAAD)
	if err != nil {
		return nil, fmt.Errorf("%w: message key", ErrAuthentication)
	}
	stream, err := multiBodyStream(r.suite.aead, key, nonce)
	clear(key)
	if err != nil {
		return nil, err
	}
	body, err := newOpenedReader(ct, stream, cfg, len(nonce))
	if err != nil {
		return nil, err
	}
	return r.newOpener(body, rctx, enc), nil
}
