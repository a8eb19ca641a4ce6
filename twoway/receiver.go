package twoway

import (
	"context"
	"fmt"
	"io"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// RequestReceiver opens requests sealed to one key by a RequestSender, and
// seals the responses to them. It is safe for concurrent use when its
// random source and key are.
type RequestReceiver struct{ receiverBase }

// receiverBase is what one-to-one and one-to-many receivers share: the
// suite, the key, the header requests must carry, and the source of
// response nonces. It opens both kinds of request, and a Gateway holds one
// per key and suite.
type receiverBase struct {
	suite  *suite
	key    receiverKey
	rand   io.Reader
	header RequestHeader
	hdr    []byte
}

func newReceiverBase(s *suite, keyID byte, k receiverKey, rnd io.Reader) receiverBase {
	h := s.header(keyID)
	hdr, _ := h.MarshalBinary()
	return receiverBase{suite: s, key: k, rand: randOrDefault(rnd), header: h, hdr: hdr}
}

// NewRequestReceiver returns a receiver for requests sealed with suite to
// the key keyID whose private key is privKey. A nil randReader means
// crypto/rand; it supplies response nonces.
func NewRequestReceiver(suite hpke.Suite, keyID byte, privKey circlkem.PrivateKey, randReader io.Reader) (*RequestReceiver, error) {
	return NewRequestReceiverWithCustomSuite(AdaptCirclHPKESuite(suite), keyID, privKey, randReader)
}

// NewRequestReceiverWithCustomSuite is NewRequestReceiver for an
// HPKESuite, such as one that is not circl's.
func NewRequestReceiverWithCustomSuite(suite HPKESuite, keyID byte, privKey circlkem.PrivateKey, randReader io.Reader) (*RequestReceiver, error) {
	s, k, err := newCirclReceiver(suite, privKey)
	if err != nil {
		return nil, err
	}
	return newRequestReceiver(s, keyID, k, randReader), nil
}

func newCirclReceiver(suite HPKESuite, privKey circlkem.PrivateKey) (*suite, receiverKey, error) {
	s, err := newSuite(suite)
	if err != nil {
		return nil, receiverKey{}, err
	}
	if privKey == nil {
		return nil, receiverKey{}, fmt.Errorf("twoway: nil private key")
	}
	if s.custom != nil {
		return s, receiverKey{circl: privKey}, nil
	}
	key, err := kem.FromCircl(privKey)
	if err != nil {
		return nil, receiverKey{}, fmt.Errorf("twoway: %w", err)
	}
	if key.KEM() != kem.ID(s.kemID) {
		return nil, receiverKey{}, fmt.Errorf("twoway: private key is a %v key, the suite's KEM is %v", key.KEM(), kem.ID(s.kemID))
	}
	return s, receiverKey{key: key}, nil
}

func newRequestReceiver(s *suite, keyID byte, k receiverKey, rnd io.Reader) *RequestReceiver {
	return &RequestReceiver{newReceiverBase(s, keyID, k, rnd)}
}

// NewRequestOpener starts opening the request read from ct: it reads the
// header and encapsulated key and decapsulates now, the body as the opener
// is read (unchunked: now, authenticated before this returns). mediaType and
// chunking must match the sealer's.
func (r *RequestReceiver) NewRequestOpener(ct io.Reader, mediaType []byte, opts ...Option) (*RequestOpener, error) {
	return r.NewRequestOpenerContext(context.Background(), ct, mediaType, opts...)
}

// NewRequestOpenerContext is NewRequestOpener with a context that bounds the
// wait for the private key: a key in a token or behind a plugin is reached
// within ctx's deadline, and a cancelled ctx returns an error wrapping
// ctx.Err().
func (r *RequestReceiver) NewRequestOpenerContext(ctx context.Context, ct io.Reader, mediaType []byte, opts ...Option) (*RequestOpener, error) {
	cfg, h, err := readRequestHeader(ct, opts)
	if err != nil {
		return nil, err
	}
	if h != r.header {
		return nil, mismatch(h, r.header)
	}
	return r.openRequest(ctx, ct, mediaType, cfg)
}

// readRequestHeader applies an opener's options and reads and parses the
// request header at the start of ct.
func readRequestHeader(ct io.Reader, opts []Option) (*opConfig, RequestHeader, error) {
	cfg, err := newConfig(false, opts)
	if err != nil {
		return nil, RequestHeader{}, err
	}
	if ct == nil {
		return nil, RequestHeader{}, fmt.Errorf("twoway: nil request reader")
	}
	var hdr [BinaryRequestHeaderLen]byte
	if err := readFull(ct, hdr[:], "request header"); err != nil {
		return nil, RequestHeader{}, err
	}
	h, err := ParseRequestHeaderFrom(hdr[:])
	if err != nil {
		return nil, RequestHeader{}, err
	}
	return cfg, h, nil
}

// openRequest opens a one-to-one request whose header has been read and
// checked.
func (r *receiverBase) openRequest(ctx context.Context, ct io.Reader, mediaType []byte, cfg *opConfig) (*RequestOpener, error) {
	enc := make([]byte, r.suite.nenc)
	if err := readFull(ct, enc, "encapsulated key"); err != nil {
		return nil, err
	}
	rctx, err := r.suite.setupReceiver(ctx, &r.key, enc, info(r.hdr, mediaType))
	if err != nil {
		return nil, err
	}
	body, err := newOpenedReader(ct, rctx, cfg, BinaryRequestHeaderLen+len(enc))
	if err != nil {
		return nil, err
	}
	return r.newOpener(body, rctx, enc), nil
}

// newOpener returns the opener of a request whose plaintext is body, and
// whose responses are bound to its HPKE context rctx and encapsulated key
// enc.
func (r *receiverBase) newOpener(body io.Reader, rctx exporter, enc []byte) *RequestOpener {
	return &RequestOpener{r: body, rand: r.rand, resp: r.suite.responseCtx(rctx, enc)}
}

// mismatch explains how a request header differs from the receiver's.
func mismatch(got, want RequestHeader) error {
	if got.KeyID != want.KeyID {
		return fmt.Errorf("%w: the request is for key id %d, this receiver serves key id %d", ErrHeaderMismatch, got.KeyID, want.KeyID)
	}
	return fmt.Errorf("%w: the request uses %s; this receiver serves %s", ErrHeaderMismatch, got, want)
}

// RequestOpener opens one request. It is an io.Reader of the request
// plaintext, and seals the response bound to the request. A RequestOpener
// belongs to one message and one goroutine.
//
// With chunking, Read returns plaintext as soon as each chunk has been
// authenticated; the message is complete, and not truncated, only when Read
// returns io.EOF. Any other error means the request must be discarded.
type RequestOpener struct {
	r    io.Reader
	rand io.Reader
	resp *responseCtx
}

// Read reads the request plaintext.
func (o *RequestOpener) Read(p []byte) (int, error) { return o.r.Read(p) }

// NewResponseSealer starts sealing the response read from pt, bound to this
// request. mediaType must be the one the requester opens the response with,
// and chunking must match. Unchunked, pt is read to its end now.
func (o *RequestOpener) NewResponseSealer(pt io.Reader, mediaType []byte, opts ...Option) (*ResponseSealer, error) {
	return o.resp.newSealer(o.rand, pt, mediaType, opts)
}
