// Package roundtrip runs request-response round trips with one key, as the
// twoway-hsm selftest and demo do and as the backends' tests do: a twoway
// sender on the client side seals a request to the key's public key, a
// twoway receiver built from the key (which may be only a handle: a token,
// a TPM or a plugin decapsulates) opens it and seals a response bound to
// it, and the client opens the response. Both plaintexts are checked.
package roundtrip

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Shape is the kind of a round trip.
type Shape int

// The shapes; round trip i of a run has shape Shape(i % NumShapes).
const (
	OneToOne Shape = iota
	OneToOneChunked
	OneToMany
	OneToManyChunked
	NumShapes
)

func (s Shape) String() string {
	return [...]string{"one-to-one", "one-to-one chunked", "one-to-many", "one-to-many chunked"}[s]
}

func (s Shape) Chunked() bool { return s == OneToOneChunked || s == OneToManyChunked }
func (s Shape) Multi() bool   { return s == OneToMany || s == OneToManyChunked }

// MultiReceivers is the number of receivers a one-to-many request is sealed
// to. Each is a receiver of its own (its own key id) over the same key, so a
// one-to-many round trip decapsulates that many times.
const MultiReceivers = 2

// ChunkLen is the chunk size of chunked round trips, small enough that a
// message of a few KiB spans several chunks.
const ChunkLen = 1024

// Media types of the round trips' messages: chunked messages have their
// own, as they must (see twoway.EnableChunking).
var (
	reqMediaType         = []byte("application/x-twoway-hsm-selftest-request")
	respMediaType        = []byte("application/x-twoway-hsm-selftest-response")
	chunkedReqMediaType  = []byte("application/x-twoway-hsm-selftest-chunked-request")
	chunkedRespMediaType = []byte("application/x-twoway-hsm-selftest-chunked-response")
)

// mediaTypes returns the media types of a shape's request and response.
func (s Shape) mediaTypes() (req, resp []byte) {
	if s.Chunked() {
		return chunkedReqMediaType, chunkedRespMediaType
	}
	return reqMediaType, respMediaType
}

// TimedKey is a kem.PrivateKey that records how long each decapsulation
// takes. The twoway receivers use their key only through kem.PrivateKey.
type TimedKey struct {
	kem.PrivateKey
	mu      sync.Mutex
	samples []time.Duration
}

func (k *TimedKey) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	start := time.Now()
	ss, err := k.PrivateKey.DecapsulateContext(ctx, enc)
	d := time.Since(start)
	if err == nil {
		k.mu.Lock()
		k.samples = append(k.samples, d)
		k.mu.Unlock()
	}
	return ss, err
}

// NewTimedKey returns key with its decapsulations timed.
func NewTimedKey(key kem.PrivateKey) *TimedKey { return &TimedKey{PrivateKey: key} }

// Durations returns a copy of the recorded decapsulation times.
func (k *TimedKey) Durations() []time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.samples)
}

// Tripper runs round trips with one key. It is safe for concurrent
// use: twoway senders and receivers are, and each round trip has sealers
// and openers of its own.
type Tripper struct {
	key   *TimedKey
	suite hpke.Suite
	pub   circlkem.PublicKey
	one   *twoway.RequestReceiver
	multi [MultiReceivers]*twoway.MultiRequestReceiver
	size  int
}

// New prepares round trips with key under the KDF and AEAD,
// with requests and responses of size bytes.
func New(key kem.PrivateKey, kdf hpke.KDF, aead hpke.AEAD, size int) (*Tripper, error) {
	hk := hpke.KEM(key.KEM())
	if !hk.IsValid() {
		return nil, fmt.Errorf("the key's KEM %v has no HPKE sender in this build", key.KEM())
	}
	pub, err := hk.Scheme().UnmarshalBinaryPublicKey(key.PublicKeyBytes())
	if err != nil {
		return nil, fmt.Errorf("the key's public key: %w", err)
	}
	rt := &Tripper{key: NewTimedKey(key), suite: hpke.NewSuite(hk, kdf, aead), pub: pub, size: size}
	rt.one, err = twoway.NewRequestReceiverForKey(1, rt.key, kdf, aead, nil)
	if err != nil {
		return nil, err
	}
	for i := range rt.multi {
		rt.multi[i], err = twoway.NewMultiRequestReceiverForKey(byte(i+1), rt.key, kdf, aead, nil)
		if err != nil {
			return nil, err
		}
	}
	return rt, nil
}

// options returns the message options of a shape.
func (s Shape) options() []twoway.Option {
	if s.Chunked() {
		return []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(ChunkLen)}
	}
	return nil
}

// Run performs one round trip of shape s.
func (rt *Tripper) Run(ctx context.Context, s Shape) error {
	req := make([]byte, rt.size)
	rand.Read(req)
	if s.Multi() {
		return rt.runMulti(ctx, s, req)
	}
	opts := s.options()
	reqType, respType := s.mediaTypes()
	sender, err := twoway.NewRequestSender(rt.suite, 1, rt.pub, nil)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	sealer, err := sender.NewRequestSealer(bytes.NewReader(req), reqType, opts...)
	if err != nil {
		return fmt.Errorf("client: sealing the request: %w", err)
	}
	body, err := io.ReadAll(sealer)
	if err != nil {
		return fmt.Errorf("client: sealing the request: %w", err)
	}
	opener, err := rt.one.NewRequestOpenerContext(ctx, bytes.NewReader(body), reqType, opts...)
	if err != nil {
		return fmt.Errorf("server: opening the request: %w", err)
	}
	respBody, resp, err := serve(opener, req, respType, opts)
	if err != nil {
		return err
	}
	respOpener, err := sealer.NewResponseOpener(bytes.NewReader(respBody), respType, opts...)
	if err != nil {
		return fmt.Errorf("client: opening the response: %w", err)
	}
	return checkResponse(respOpener, resp)
}

// runMulti performs a one-to-many round trip: the request is sealed once,
// its key wrapped for each receiver, and each receiver answers.
func (rt *Tripper) runMulti(ctx context.Context, s Shape, req []byte) error {
	opts := s.options()
	reqType, respType := s.mediaTypes()
	sealer, err := twoway.NewMultiRequestSender(rt.suite, nil).NewRequestSealer(bytes.NewReader(req), reqType, opts...)
	if err != nil {
		return fmt.Errorf("client: sealing the request: %w", err)
	}
	body, err := io.ReadAll(sealer)
	if err != nil {
		return fmt.Errorf("client: sealing the request: %w", err)
	}
	for i, recv := range rt.multi {
		encapKey, openResponse, err := sealer.EncapsulateKey(byte(i+1), rt.pub)
		if err != nil {
			return fmt.Errorf("client: wrapping the key for receiver %d: %w", i+1, err)
		}
		opener, err := recv.NewRequestOpenerContext(ctx, encapKey, bytes.NewReader(body), reqType, opts...)
		if err != nil {
			return fmt.Errorf("server (receiver %d): opening the request: %w", i+1, err)
		}
		respBody, resp, err := serve(opener, req, respType, opts)
		if err != nil {
			return fmt.Errorf("receiver %d: %w", i+1, err)
		}
		respOpener, err := openResponse(bytes.NewReader(respBody), respType, opts...)
		if err != nil {
			return fmt.Errorf("client: opening the response of receiver %d: %w", i+1, err)
		}
		if err := checkResponse(respOpener, resp); err != nil {
			return fmt.Errorf("receiver %d: %w", i+1, err)
		}
	}
	return nil
}

// serve is the server side: it reads the request, checks it, and seals a
// fresh random response, returning the sealed response and its plaintext.
func serve(opener *twoway.RequestOpener, want, respType []byte, opts []twoway.Option) (sealed, resp []byte, err error) {
	got, err := io.ReadAll(opener)
	if err != nil {
		return nil, nil, fmt.Errorf("server: reading the request: %w", err)
	}
	if !bytes.Equal(got, want) {
		return nil, nil, errors.New("server: the request opened to a different plaintext")
	}
	resp = make([]byte, len(want))
	rand.Read(resp)
	respSealer, err := opener.NewResponseSealer(bytes.NewReader(resp), respType, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("server: sealing the response: %w", err)
	}
	sealed, err = io.ReadAll(respSealer)
	if err != nil {
		return nil, nil, fmt.Errorf("server: sealing the response: %w", err)
	}
	return sealed, resp, nil
}

func checkResponse(r io.Reader, want []byte) error {
	got, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("client: reading the response: %w", err)
	}
	if !bytes.Equal(got, want) {
		return errors.New("client: the response opened to a different plaintext")
	}
	return nil
}

// Decapsulations returns how long each successful decapsulation of the
// key took, in the order they happened.
func (rt *Tripper) Decapsulations() []time.Duration { return rt.key.Durations() }
