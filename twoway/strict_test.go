package twoway_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

type fixture struct {
	pk     circlkem.PublicKey
	sk     circlkem.PrivateKey
	snd    *twoway.RequestSender
	rcv    *twoway.RequestReceiver
	msnd   *twoway.MultiRequestSender
	mrcv   *twoway.MultiRequestReceiver
	chunks []twoway.Option
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{}
	f.pk, f.sk = keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "strict")
	var err error
	if f.snd, err = twoway.NewRequestSender(testSuite, 3, f.pk, nil); err != nil {
		t.Fatal(err)
	}
	if f.rcv, err = twoway.NewRequestReceiver(testSuite, 3, f.sk, nil); err != nil {
		t.Fatal(err)
	}
	f.msnd = twoway.NewMultiRequestSender(testSuite, nil)
	if f.mrcv, err = twoway.NewMultiRequestReceiver(testSuite, 3, f.sk, nil); err != nil {
		t.Fatal(err)
	}
	f.chunks = []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(32)}
	return f
}

// sealRequest returns an encapsulated request and its sealer.
func (f *fixture) sealRequest(t testing.TB, pt []byte, opts ...twoway.Option) ([]byte, *twoway.RequestSealer) {
	t.Helper()
	s, err := f.snd.NewRequestSealer(bytes.NewReader(pt), []byte("req"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	return ct, s
}

// openRequest opens ct completely, returning the plaintext and the first
// error from construction or reading.
func (f *fixture) openRequest(ct []byte, mediaType string, opts ...twoway.Option) ([]byte, *twoway.RequestOpener, error) {
	o, err := f.rcv.NewRequestOpener(bytes.NewReader(ct), []byte(mediaType), opts...)
	if err != nil {
		return nil, nil, err
	}
	pt, err := io.ReadAll(o)
	return pt, o, err
}

func mustFail(t *testing.T, what string, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("%s: error %q matches io.EOF", what, err)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("%s: error %q does not match %q", what, err, w)
		}
	}
}

// Regression: the reference's multi-receiver response opener returns
// (nil, nil) for an empty or short response.
func TestMultiResponseOpenerShortResponse(t *testing.T) {
	f := newFixture(t)
	sealer, err := f.msnd.NewRequestSealer(bytes.NewReader([]byte("hi")), []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	_, openResp, err := sealer.EncapsulateKey(3, f.pk)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 15} {
		r, err := openResp(bytes.NewReader(make([]byte, n)), []byte("r"))
		if r != nil {
			t.Fatalf("%d-byte response: got a reader", n)
		}
		mustFail(t, fmt.Sprintf("%d-byte response", n), err, twoway.ErrTruncated, io.ErrUnexpectedEOF)
	}
}

// Regression: a chunked stream cut at a chunk boundary ended in an error
// that errors.Is(err, io.EOF) accepted.
func TestChunkedTruncatedAtBoundary(t *testing.T) {
	f := newFixture(t)
	ct, sealer := f.sealRequest(t, pattern(100), f.chunks...)
	// header 7 + enc 32, then chunks of 1+32+16 bytes.
	for _, cut := range []int{39, 39 + 49, 39 + 2*49, 39 + 3*49} {
		_, _, err := f.openRequest(ct[:cut], "req", f.chunks...)
		mustFail(t, fmt.Sprintf("request cut at %d", cut), err, twoway.ErrTruncated, io.ErrUnexpectedEOF)
	}
	// and the response path
	_, opener, err := f.openRequest(ct, "req", f.chunks...)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := opener.NewResponseSealer(bytes.NewReader(pattern(100)), []byte("r"), f.chunks...)
	rct, _ := io.ReadAll(rs)
	for _, cut := range []int{16, 16 + 49, 16 + 2*49} {
		ro, err := sealer.NewResponseOpener(bytes.NewReader(rct[:cut]), []byte("r"), f.chunks...)
		if err == nil {
			_, err = io.ReadAll(ro)
		}
		mustFail(t, fmt.Sprintf("response cut at %d", cut), err, twoway.ErrTruncated, io.ErrUnexpectedEOF)
	}
}

// Chunks in another order fail to authenticate: each is sealed under its
// own sequence number.
func TestReorderedChunks(t *testing.T) {
	f := newFixture(t)
	ct, _ := f.sealRequest(t, pattern(96), f.chunks...)
	// header 7 + enc 32, then three chunks of 1+32+16 bytes, then the
	// final chunk (empty: the source's EOF came after the third chunk).
	const start, size = 39, 49
	if len(ct) != start+3*size+1+16 {
		t.Fatalf("sealed to %d bytes, not three full chunks and an empty final one", len(ct))
	}
	swapped := bytes.Clone(ct)
	copy(swapped[start:], ct[start+size:start+2*size])
	copy(swapped[start+size:], ct[start:start+size])
	got, _, err := f.openRequest(swapped, "req", f.chunks...)
	mustFail(t, "chunks 0 and 1 swapped", err, twoway.ErrAuthentication)
	if len(got) != 0 {
		t.Fatalf("%d bytes returned from reordered chunks", len(got))
	}
}

// errAfter returns data, then an error together with the last bytes.
type errAfter struct {
	data []byte
	err  error
}

func (e *errAfter) Read(p []byte) (int, error) {
	n := copy(p, e.data)
	e.data = e.data[n:]
	if len(e.data) == 0 {
		return n, e.err
	}
	return n, nil
}

// Regression: a source error returned together with data was swallowed by
// the chunk sealer, producing a complete-looking message from partial input.
func TestSourceErrorReachesCaller(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("disk on fire")
	for _, opts := range [][]twoway.Option{nil, f.chunks} {
		s, err := f.snd.NewRequestSealer(&errAfter{pattern(50), boom}, []byte("req"), opts...)
		var ct []byte
		if err == nil {
			ct, err = io.ReadAll(s)
		}
		if !errors.Is(err, boom) {
			t.Fatalf("chunked=%v: error %v, want the source's", opts != nil, err)
		}
		if ct != nil {
			// Whatever was produced must not open as a complete message.
			_, _, err := f.openRequest(ct, "req", opts...)
			mustFail(t, "partial message", err, twoway.ErrTruncated)
		}
	}
	// response sealers too
	ct, _ := f.sealRequest(t, []byte("x"), f.chunks...)
	_, opener, err := f.openRequest(ct, "req", f.chunks...)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := opener.NewResponseSealer(&errAfter{pattern(50), boom}, []byte("r"), f.chunks...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rs); !errors.Is(err, boom) {
		t.Fatalf("response sealer: error %v, want the source's", err)
	}
	// and an unchunked opener whose ciphertext source fails says so
	ct, _ = f.sealRequest(t, pattern(50))
	if _, err := f.rcv.NewRequestOpener(&errAfter{ct, boom}, []byte("req")); !errors.Is(err, boom) || !strings.Contains(err.Error(), "read ciphertext") {
		t.Fatalf("unchunked opener: error %v, want the source's, in context", err)
	}
}

// Regression: nil randomness in the multi constructors panicked.
func TestMultiNilRandomness(t *testing.T) {
	f := newFixture(t)
	snd := twoway.NewMultiRequestSender(testSuite, nil)
	rcv, err := twoway.NewMultiRequestReceiver(testSuite, 1, f.sk, nil)
	if err != nil {
		t.Fatal(err)
	}
	multiRoundTripWith(t, snd, []multiReceiver{{1, f.pk, rcv}}, []byte("hello"))
	rcv2, _ := twoway.NewMultiRequestReceiverWithCustomSuite(twoway.AdaptCirclHPKESuite(testSuite), 1, f.sk, nil)
	multiRoundTripWith(t, twoway.NewMultiRequestSenderWithCustomSuite(twoway.AdaptCirclHPKESuite(testSuite), nil), []multiReceiver{{1, f.pk, rcv2}}, []byte("hello"))
}

// A one-to-many sender whose random source runs dry reports a randomness
// failure, not a truncated message.
func TestMultiShortRandomness(t *testing.T) {
	snd := twoway.NewMultiRequestSender(testSuite, bytes.NewReader(make([]byte, 32))) // the message key only
	_, err := snd.NewRequestSealer(bytes.NewReader(nil), nil)
	if err == nil || errors.Is(err, twoway.ErrTruncated) || !strings.Contains(err.Error(), "body nonce") {
		t.Fatalf("random source exhausted after the message key: %v", err)
	}
}

// countingReader counts what is read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// Regression: the unchunked path read its whole input with no limit.
func TestUnchunkedOpenerIsBounded(t *testing.T) {
	f := newFixture(t)
	ct, _ := f.sealRequest(t, pattern(10000))
	limit := []twoway.Option{twoway.WithMaxMessageLen(1000)}
	// A source that reports its length is refused before reading the body.
	_, _, err := f.openRequest(ct, "req", limit...)
	mustFail(t, "10000-byte message with a 1000-byte limit", err, twoway.ErrMessageTooLarge)
	// A source of unknown length is read no further than the limit.
	cr := &countingReader{r: bytes.NewReader(ct)}
	_, err = f.rcv.NewRequestOpener(struct{ io.Reader }{cr}, []byte("req"), limit...)
	mustFail(t, "unknown-length source", err, twoway.ErrMessageTooLarge)
	if cr.n > 39+1000+1024 {
		t.Fatalf("read %d bytes of a message beyond a 1000-byte limit", cr.n)
	}
	// An endless source ends in an error, not an out-of-memory.
	_, err = f.rcv.NewRequestOpener(io.MultiReader(bytes.NewReader(ct[:39]), zeros{}), []byte("req"))
	mustFail(t, "endless source", err, twoway.ErrMessageTooLarge)
	// Exactly at the limit is fine.
	ct2, _ := f.sealRequest(t, pattern(1000-16))
	if _, _, err := f.openRequest(ct2, "req", limit...); err != nil {
		t.Fatal(err)
	}
	// Response openers are bounded the same way.
	_, opener, _ := f.openRequest(ct2, "req")
	rs, _ := opener.NewResponseSealer(bytes.NewReader(pattern(5000)), []byte("r"))
	rct, _ := io.ReadAll(rs)
	_, sealer := f.sealRequest(t, []byte("q"))
	_, err = sealer.NewResponseOpener(bytes.NewReader(rct), []byte("r"), limit...)
	mustFail(t, "large response", err, twoway.ErrMessageTooLarge)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestWrongMediaTypeKeyAndSuite(t *testing.T) {
	f := newFixture(t)
	for _, opts := range [][]twoway.Option{nil, f.chunks} {
		ct, sealer := f.sealRequest(t, []byte("payload"), opts...)
		_, _, err := f.openRequest(ct, "other", opts...)
		mustFail(t, "wrong media type", err, twoway.ErrAuthentication)

		other, _ := twoway.NewRequestReceiver(testSuite, 4, f.sk, nil)
		_, err = other.NewRequestOpener(bytes.NewReader(ct), []byte("req"), opts...)
		mustFail(t, "wrong key id", err, twoway.ErrHeaderMismatch)

		chacha := hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)
		other, _ = twoway.NewRequestReceiver(chacha, 3, f.sk, nil)
		_, err = other.NewRequestOpener(bytes.NewReader(ct), []byte("req"), opts...)
		mustFail(t, "wrong suite", err, twoway.ErrHeaderMismatch)

		_, otherSK := keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "other key")
		other, _ = twoway.NewRequestReceiver(testSuite, 3, otherSK, nil)
		o, err := other.NewRequestOpener(bytes.NewReader(ct), []byte("req"), opts...)
		if err == nil {
			_, err = io.ReadAll(o)
		}
		mustFail(t, "wrong private key", err, twoway.ErrAuthentication)

		_, opener, err := f.openRequest(ct, "req", opts...)
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := opener.NewResponseSealer(bytes.NewReader([]byte("answer")), []byte("r"), opts...)
		rct, _ := io.ReadAll(rs)
		ro, err := sealer.NewResponseOpener(bytes.NewReader(rct), []byte("x"), opts...)
		if err == nil {
			_, err = io.ReadAll(ro)
		}
		mustFail(t, "wrong response media type", err, twoway.ErrAuthentication)
	}
}

// TestTamperingEverywhere flips every bit, cuts at every length and appends
// garbage, on requests and responses, one-to-one and one-to-many, chunked
// and unchunked: each must fail, and no plaintext that was not sealed may
// come out.
func TestTamperingEverywhere(t *testing.T) {
	f := newFixture(t)
	pt := pattern(80)
	for _, opts := range [][]twoway.Option{nil, f.chunks} {
		name := "unchunked"
		if opts != nil {
			name = "chunked"
		}
		t.Run(name, func(t *testing.T) {
			ct, sealer := f.sealRequest(t, pt, opts...)
			_, opener, err := f.openRequest(ct, "req", opts...)
			if err != nil {
				t.Fatal(err)
			}
			rs, _ := opener.NewResponseSealer(bytes.NewReader(pt), []byte("r"), opts...)
			rct, _ := io.ReadAll(rs)

			openReq := func(b []byte) ([]byte, error) {
				got, _, err := f.openRequest(b, "req", opts...)
				return got, err
			}
			openResp := func(b []byte) ([]byte, error) {
				ro, err := sealer.NewResponseOpener(bytes.NewReader(b), []byte("r"), opts...)
				if err != nil {
					return nil, err
				}
				return io.ReadAll(ro)
			}
			finalMax := 0 // the final chunk: indicator, at most 32 bytes and a tag
			if opts != nil {
				finalMax = 1 + 32 + 16
			}
			tamper(t, "request", finalMax, ct, pt, openReq)
			tamper(t, "response", finalMax, rct, pt, openResp)

			// one-to-many: the body, and the encapsulated key
			ms, _ := f.msnd.NewRequestSealer(bytes.NewReader(pt), []byte("req"), opts...)
			mct, _ := io.ReadAll(ms)
			ek, _, err := ms.EncapsulateKey(3, f.pk)
			if err != nil {
				t.Fatal(err)
			}
			openMulti := func(ek, b []byte) ([]byte, error) {
				o, err := f.mrcv.NewRequestOpener(ek, bytes.NewReader(b), []byte("req"), opts...)
				if err != nil {
					return nil, err
				}
				return io.ReadAll(o)
			}
			tamper(t, "multi body", finalMax, mct, pt, func(b []byte) ([]byte, error) { return openMulti(ek, b) })
			tamper(t, "multi key", 0, ek, pt, func(b []byte) ([]byte, error) { return openMulti(b, mct) })
		})
	}
}

// typedErrors are the errors a tampered message may fail with: each says
// what was wrong.
var typedErrors = []error{
	twoway.ErrAuthentication, twoway.ErrTruncated, twoway.ErrHeaderMismatch,
	twoway.ErrUnsupportedSuite, twoway.ErrChunkTooLarge, twoway.ErrEmptyChunk,
	twoway.ErrMalformed,
}

// tamper checks that every flipped bit of good, every cut and some appended
// bytes make open fail with one of typedErrors (never io.EOF) and return no
// plaintext that was not sealed; for a chunked message, that every cut
// fails with ErrTruncated, except within its final chunk (at most finalMax
// bytes; 0 for an unchunked message).
func tamper(t *testing.T, what string, finalMax int, good, pt []byte, open func([]byte) ([]byte, error)) {
	t.Helper()
	if got, err := open(good); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("%s: untampered message does not open: %v", what, err)
	}
	check := func(desc string, b []byte) error {
		got, err := open(b)
		if err == nil {
			t.Fatalf("%s, %s: opened without error", what, desc)
		}
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s, %s: error matches io.EOF: %v", what, desc, err)
		}
		if !slices.ContainsFunc(typedErrors, func(e error) bool { return errors.Is(err, e) }) {
			t.Fatalf("%s, %s: error names none of the package's errors: %v", what, desc, err)
		}
		if !bytes.HasPrefix(pt, got) {
			t.Fatalf("%s, %s: returned %d bytes that were not sealed", what, desc, len(got))
		}
		return err
	}
	for i := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			check(fmt.Sprintf("bit %d of byte %d flipped", bit, i), b)
		}
	}
	// A chunked message cut before its final chunk is truncated; the final
	// chunk runs to the end of the stream, so a cut inside it fails
	// authentication.
	k := len(good) // the first cut that failed authentication
	for n := range len(good) {
		err := check(fmt.Sprintf("cut to %d bytes", n), good[:n])
		if finalMax == 0 {
			continue
		}
		if errors.Is(err, twoway.ErrAuthentication) {
			k = min(k, n)
		} else if n > k || !errors.Is(err, twoway.ErrTruncated) {
			t.Fatalf("%s, cut to %d bytes: %v, want ErrTruncated before the final chunk and ErrAuthentication within it", what, n, err)
		}
	}
	if finalMax > 0 && len(good)-k > finalMax {
		t.Fatalf("%s: cuts in the last %d bytes fail authentication; the final chunk is at most %d", what, len(good)-k, finalMax)
	}
	for _, extra := range [][]byte{{0}, {1, 2, 3}, make([]byte, 40)} {
		check(fmt.Sprintf("%d bytes appended", len(extra)), append(bytes.Clone(good), extra...))
	}
}

// TestEmptyNonFinalChunk builds messages with an empty non-final chunk,
// which draft-07 and later forbid, on the request and the response path.
func TestEmptyNonFinalChunk(t *testing.T) {
	e := chunkedExample
	// Request: the example's HPKE context seals an empty chunk, then the
	// request as the final chunk.
	ctx := e.requestContext(t)
	ct := unhex(t, e.encRequest)[:7+32]
	empty, _ := ctx.Seal(nil, nil, nil)
	ct = quicvarint.Append(ct, uint64(len(empty)))
	ct = append(ct, empty...)
	final, _ := ctx.Seal(nil, unhex(t, e.request), []byte("final"))
	ct = append(append(ct, 0), final...)

	sk, _ := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPrivateKey(unhex(t, e.skR))
	rcv, _ := twoway.NewRequestReceiver(testSuite, 1, sk, nil)
	o, err := rcv.NewRequestOpener(bytes.NewReader(ct), []byte(e.reqMedia), twoway.EnableChunking())
	if err == nil {
		_, err = io.ReadAll(o)
	}
	mustFail(t, "request with an empty chunk", err, twoway.ErrEmptyChunk)

	// Response: the example's response key and nonce (from the draft).
	block, _ := aes.NewCipher(unhex(t, "8209f78f2a1610d80c7125009b00aff0"))
	gcm, _ := cipher.NewGCM(block)
	nonce := unhex(t, "fead854635d2d5527d64f546")
	rct := unhex(t, e.respNonce)
	c0 := gcm.Seal(nil, nonce, nil, nil)
	rct = append(quicvarint.Append(rct, uint64(len(c0))), c0...)
	n1 := bytes.Clone(nonce)
	n1[11] ^= 1
	c1 := gcm.Seal(nil, n1, unhex(t, e.response), []byte("final"))
	rct = append(append(rct, 0), c1...)

	snd, _ := twoway.NewRequestSenderWithCustomSuite(fixedEphemeralSuite{skE: unhex(t, e.skE)}, 1, e.pub(t), nil)
	sealer, _ := snd.NewRequestSealer(bytes.NewReader(unhex(t, e.request)), []byte(e.reqMedia), twoway.EnableChunking())
	io.ReadAll(sealer)
	ro, err := sealer.NewResponseOpener(bytes.NewReader(rct), []byte(e.respMedia), twoway.EnableChunking())
	if err == nil {
		_, err = io.ReadAll(ro)
	}
	mustFail(t, "response with an empty chunk", err, twoway.ErrEmptyChunk)

	// Sanity: the same construction without the empty chunk opens, so the
	// failure above is the empty chunk's.
	good := append(unhex(t, e.respNonce), 0)
	good = append(good, gcm.Seal(nil, nonce, unhex(t, e.response), []byte("final"))...)
	sealer2, _ := snd.NewRequestSealer(bytes.NewReader(unhex(t, e.request)), []byte(e.reqMedia), twoway.EnableChunking())
	io.ReadAll(sealer2)
	ro, err = sealer2.NewResponseOpener(bytes.NewReader(good), []byte(e.respMedia), twoway.EnableChunking())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(ro); err != nil || !bytes.Equal(got, unhex(t, e.response)) {
		t.Fatalf("control response: %v", err)
	}
}

func TestOptionValidation(t *testing.T) {
	f := newFixture(t)
	for _, opt := range []twoway.Option{
		twoway.WithMaxChunkPlaintextLen(0),
		twoway.WithMaxChunkPlaintextLen(twoway.MaxChunkPlaintextLen + 1),
		twoway.WithInitialChunkBufferLen(0),
		twoway.WithMaxMessageLen(0),
		nil,
	} {
		if _, err := f.snd.NewRequestSealer(bytes.NewReader(nil), nil, opt); err == nil {
			t.Fatal("invalid option accepted")
		}
	}
	if _, err := f.snd.NewRequestSealer(nil, nil); err == nil {
		t.Fatal("nil plaintext reader accepted")
	}
	if _, err := f.rcv.NewRequestOpener(nil, nil); err == nil {
		t.Fatal("nil ciphertext reader accepted")
	}
	if _, err := twoway.NewRequestSender(testSuite, 1, nil, nil); err == nil {
		t.Fatal("nil public key accepted")
	}
	p256pk, p256sk := keyPair(t, hpke.KEM_P256_HKDF_SHA256, "p")
	if _, err := twoway.NewRequestSender(testSuite, 1, p256pk, nil); err == nil {
		t.Fatal("P-256 public key accepted for an X25519 suite")
	}
	if _, err := twoway.NewRequestReceiver(testSuite, 1, p256sk, nil); err == nil {
		t.Fatal("P-256 private key accepted for an X25519 suite")
	}
	if _, err := twoway.NewRequestReceiver(testSuite, 1, nil, nil); err == nil {
		t.Fatal("nil private key accepted")
	}
	bad := badSuite{twoway.AdaptCirclHPKESuite(testSuite)}
	if _, err := twoway.NewRequestSenderWithCustomSuite(bad, 1, f.pk, nil); !errors.Is(err, twoway.ErrUnsupportedSuite) {
		t.Fatalf("KDF 9: %v", err)
	}
	if _, err := twoway.NewRequestReceiverWithCustomSuite(bad, 1, f.sk, nil); !errors.Is(err, twoway.ErrUnsupportedSuite) {
		t.Fatalf("KDF 9: %v", err)
	}
	if _, err := twoway.NewMultiRequestSenderWithCustomSuite(bad, nil).NewRequestSealer(bytes.NewReader(nil), nil); !errors.Is(err, twoway.ErrUnsupportedSuite) {
		t.Fatalf("multi with KDF 9: %v", err)
	}
}

// badSuite claims a KDF that does not exist.
type badSuite struct{ twoway.HPKESuite }

func (b badSuite) Params() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	k, _, a := b.HPKESuite.Params()
	return k, hpke.KDF(9), a
}

// TestLengthHint opens unchunked messages with right, short and long
// length hints, and from a source of unknown length.
func TestLengthHint(t *testing.T) {
	f := newFixture(t)
	pt := pattern(20000)
	ct, _ := f.sealRequest(t, pt)
	for _, hint := range []int{len(ct), 0, 10, len(ct) - 100, len(ct) + 100} {
		o, err := f.rcv.NewRequestOpener(struct{ io.Reader }{bytes.NewReader(ct)}, []byte("req"), twoway.WithLengthHint(hint))
		if err != nil {
			t.Fatalf("hint %d: %v", hint, err)
		}
		if got, _ := io.ReadAll(o); !bytes.Equal(got, pt) {
			t.Fatalf("hint %d: wrong plaintext", hint)
		}
	}
	if _, err := f.rcv.NewRequestOpener(bytes.NewReader(ct), []byte("req"), twoway.WithLengthHint(-1)); err == nil {
		t.Fatal("negative hint accepted")
	}
	// A sealer given a hint for its plaintext.
	s, err := f.snd.NewRequestSealer(struct{ io.Reader }{bytes.NewReader(pt)}, []byte("req"), twoway.WithLengthHint(len(pt)))
	if err != nil {
		t.Fatal(err)
	}
	ct2, _ := io.ReadAll(s)
	if got, _, err := f.openRequest(ct2, "req"); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("hinted sealer: %v", err)
	}
}

// A chunked message's first chunk, stripped of its length prefix, is a
// valid unchunked message under the same key and media type: neither format
// says which one it is, so a receiver that accepted both under one media
// type could be handed a truncated message. Chunked and unchunked messages
// therefore need media types of their own (as RFC 9458's and Chunked
// OHTTP's are), and then the splice fails. FuzzMultiRequestOpener found it,
// in a fuzz world whose two modes shared a media type.
func TestChunkedAndUnchunkedNeedTheirOwnMediaTypes(t *testing.T) {
	f := newFixture(t)
	msg := pattern(100)
	seal := func(mediaType string) []byte {
		s, err := f.snd.NewRequestSealer(bytes.NewReader(msg), []byte(mediaType), f.chunks...)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := io.ReadAll(s)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	// Header 7 + enc 32, then the first chunk: a 1-byte length (48) and
	// 32 + 16 bytes.
	splice := func(ct []byte) []byte { return append(bytes.Clone(ct[:39]), ct[40:40+48]...) }
	pt, _, err := f.openRequest(splice(seal("req")), "req")
	if err != nil || !bytes.Equal(pt, msg[:32]) {
		t.Fatalf("one media type for both: got %x, %v; if the formats now tell the modes apart, update EnableChunking's documentation", pt, err)
	}
	_, _, err = f.openRequest(splice(seal("req-chunked")), "req")
	mustFail(t, "a chunk spliced into an unchunked request of another media type", err, twoway.ErrAuthentication)

	// One-to-many: the encapsulated key binds the media type, the body
	// does not (nonce 12, then chunks as above).
	multi := func(mediaType string) (ek, body []byte) {
		s, err := f.msnd.NewRequestSealer(bytes.NewReader(msg), []byte(mediaType), f.chunks...)
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(s); err != nil {
			t.Fatal(err)
		}
		if ek, _, err = s.EncapsulateKey(3, f.pk); err != nil {
			t.Fatal(err)
		}
		return ek, append(bytes.Clone(body[:12]), body[13:13+48]...)
	}
	openMulti := func(ek, body []byte) ([]byte, error) {
		o, err := f.mrcv.NewRequestOpener(ek, bytes.NewReader(body), []byte("req"))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(o)
	}
	if pt, err := openMulti(multi("req")); err != nil || !bytes.Equal(pt, msg[:32]) {
		t.Fatalf("one-to-many, one media type for both: got %x, %v", pt, err)
	}
	_, err = openMulti(multi("req-chunked"))
	mustFail(t, "one-to-many: a chunk spliced into an unchunked request of another media type", err, twoway.ErrAuthentication)
}
