package twoway

import (
	"fmt"
	"io"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/twoway-hsm/twoway-hsm/internal/keyschedule"
)

// finalAAD is the AAD of the final chunk (draft-ietf-ohai-chunked-ohttp-08
// section 6).
var finalAAD = []byte("final")

// streamOf returns the AEAD stream of a context of the fast path (a
// keyschedule.Stream or the one a keyschedule.Context embeds), whose Seal
// and Open the chunk loops call directly rather than through sealCtx or
// openCtx, and nil for a custom suite's context.
func streamOf(ctx any) *keyschedule.Stream {
	switch c := ctx.(type) {
	case *keyschedule.Stream:
		return c
	case *keyschedule.Context:
		return &c.Stream
	}
	return nil
}

// maxConsecutiveEmptyReads bounds how often a source may return (0, nil)
// in a row before a sealer gives up with io.ErrNoProgress, as bufio does.
const maxConsecutiveEmptyReads = 100

// chunkSealer reads plaintext from src and returns a Chunked OHTTP chunk
// stream: varint length, sealed chunk, ..., then a zero length and the final
// chunk sealed with AAD "final".
//
// When the caller's buffer holds a whole chunk, the plaintext is read
// straight into it and sealed in place: one copy (the source's) and one
// AEAD pass per byte. Otherwise chunks go through an internal buffer.
type chunkSealer struct {
	src      io.Reader
	ctx      sealCtx
	stream   *keyschedule.Stream // ctx's stream on the fast path, else nil
	maxPT    int
	perRead  bool
	maxHdr   int // varint length of the longest chunk
	maxChunk int // maxHdr + maxPT + tag

	buf     []byte
	pending []byte
	final   bool  // the final chunk has been produced
	err     error // reported once pending is drained
}

func newChunkSealer(src io.Reader, ctx sealCtx, cfg *opConfig) *chunkSealer {
	maxCT := cfg.maxChunkPlaintextLen + ctx.Overhead()
	hdr := quicvarint.Len(uint64(maxCT))
	return &chunkSealer{
		src:      src,
		ctx:      ctx,
		stream:   streamOf(ctx),
		maxPT:    cfg.maxChunkPlaintextLen,
		perRead:  cfg.chunkPerRead,
		maxHdr:   hdr,
		maxChunk: hdr + maxCT,
	}
}

func (s *chunkSealer) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.final {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) >= s.maxChunk {
		start, end := s.sealChunk(p)
		if start > 0 {
			copy(p, p[start:end])
		}
		return end - start, nil
	}
	if s.buf == nil {
		s.buf = make([]byte, s.maxChunk)
	}
	start, end := s.sealChunk(s.buf)
	s.pending = s.buf[start:end]
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// sealChunk reads the next chunk's plaintext into dst[maxHdr:], seals it in
// place, writes the length prefix right before it, and returns the chunk's
// bounds in dst. It returns an empty chunk when it records an error in s.err.
func (s *chunkSealer) sealChunk(dst []byte) (start, end int) {
	region := dst[s.maxHdr : s.maxHdr+s.maxPT]
	n, eof, empty := 0, false, 0
	var srcErr error
	for n < len(region) {
		m, err := s.src.Read(region[n:])
		if m == len(region)-n && err == nil { // the common case: the chunk is full
			n = len(region)
			break
		}
		if m < 0 || m > len(region)-n {
			srcErr = fmt.Errorf("source returned an invalid count %d", m)
			m = 0
		}
		n += m
		if err == io.EOF {
			eof = true
			break
		}
		if err != nil || srcErr != nil {
			if srcErr == nil {
				srcErr = err
			}
			break
		}
		if m == 0 {
			if empty++; empty >= maxConsecutiveEmptyReads {
				srcErr = io.ErrNoProgress
				break
			}
			continue
		}
		empty = 0
		if s.perRead {
			break
		}
	}
	if srcErr != nil {
		// Whatever was read before the error is sealed and delivered as a
		// non-final chunk; the message stays incomplete, so its receiver
		// fails with ErrTruncated rather than accepting partial input.
		s.err = fmt.Errorf("twoway: read plaintext: %w", srcErr)
		if n == 0 {
			return 0, 0
		}
	}
	final := eof && srcErr == nil
	var aad []byte
	if final {
		aad = finalAAD
	}
	ct, err := s.seal(region[:0], region[:n], aad)
	if err != nil {
		clear(region[:n])
		s.err = fmt.Errorf("twoway: seal chunk: %w", err)
		return 0, 0
	}
	if &ct[:1][0] != &dst[s.maxHdr] { // a custom sealer that did not append in place
		clear(region[:n])
		s.err = fmt.Errorf("twoway: seal chunk: sealer did not write in place")
		return 0, 0
	}
	length := uint64(len(ct))
	if final {
		length = 0
		s.final = true
	}
	start = s.maxHdr - quicvarint.Len(length)
	quicvarint.Append(dst[start:start], length)
	return start, s.maxHdr + len(ct)
}

// seal seals one chunk: directly with the stream on the fast path, through
// the interface otherwise.
func (s *chunkSealer) seal(dst, pt, aad []byte) ([]byte, error) {
	if s.stream != nil {
		return s.stream.Seal(dst, pt, aad)
	}
	return s.ctx.Seal(dst, pt, aad)
}

// lookLen is how many bytes past a chunk a chunked opener reads with the
// chunk when the buffer has room: the longest length prefix, so that the
// next chunk's prefix costs no Read of its own.
const lookLen = 8

// chunkOpener reads a Chunked OHTTP chunk stream from src and returns the
// plaintext. It buffers at most one chunk; when the caller's buffer holds a
// whole chunk the ciphertext is read straight into it and opened in place.
// The stream must end with a final chunk that authenticates with AAD
// "final" and extends to the end of src.
//
// With a chunk it reads up to lookLen bytes of what follows when the buffer
// it reads into has room (ahead), and takes the next length prefix from
// them: a source without io.ByteReader, such as an HTTP body, then costs one
// Read per chunk rather than three.
type chunkOpener struct {
	src      io.Reader
	ctx      openCtx
	stream   *keyschedule.Stream // ctx's stream on the fast path, else nil
	overhead int
	maxCT    int // largest sealed chunk accepted
	initCap  int // first size of buf; at most maxCT, as newConfig clamps it

	buf     []byte
	pending []byte // plaintext in buf not yet returned
	chunk   int    // index of the next chunk, for error messages
	done    bool
	err     error
	look    [lookLen]byte
	ahead   []byte // bytes read past the last chunk, in look, not yet parsed
}

func newChunkOpener(src io.Reader, ctx openCtx, cfg *opConfig) *chunkOpener {
	overhead := ctx.Overhead()
	return &chunkOpener{
		src:      src,
		ctx:      ctx,
		stream:   streamOf(ctx),
		overhead: overhead,
		maxCT:    cfg.maxChunkPlaintextLen + overhead,
		initCap:  cfg.initialChunkBufferLen + overhead,
	}
}

// open opens one chunk: directly with the stream on the fast path, through
// the interface otherwise.
func (o *chunkOpener) open(dst, ct, aad []byte) ([]byte, error) {
	if o.stream != nil {
		return o.stream.Open(dst, ct, aad)
	}
	return o.ctx.Open(dst, ct, aad)
}

func (o *chunkOpener) Read(p []byte) (int, error) {
	if len(o.pending) > 0 {
		n := copy(p, o.pending)
		clear(o.pending[:n])
		o.pending = o.pending[n:]
		return n, nil
	}
	if o.err != nil {
		return 0, o.err
	}
	if o.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := o.next(p)
	if err != nil {
		o.err = err
	}
	return n, err
}

// next opens one chunk, into p when it fits and into o.buf otherwise.
func (o *chunkOpener) next(p []byte) (int, error) {
	l, err := o.readLength()
	if err != nil {
		return 0, err
	}
	if l == 0 {
		return o.final(p)
	}
	overhead := o.overhead
	switch {
	case l > uint64(o.maxCT):
		return 0, fmt.Errorf("%w: chunk %d is %d bytes, the limit is %d", ErrChunkTooLarge, o.chunk, l, o.maxCT)
	case l < uint64(overhead):
		return 0, fmt.Errorf("%w: chunk %d is %d bytes, shorter than its %d-byte tag", ErrMalformed, o.chunk, l, overhead)
	case l == uint64(overhead):
		return 0, fmt.Errorf("%w: chunk %d", ErrEmptyChunk, o.chunk)
	}
	n := int(l)
	dst := p // room to read into: p's length, or o.buf's capacity
	if len(p) < n {
		dst = o.grow(n)
		dst = dst[:min(cap(dst), n+lookLen)]
	}
	if err := o.readChunk(dst, n); err != nil {
		return 0, err
	}
	pt, err := o.open(dst[:0], dst[:n], nil)
	if err != nil {
		clear(dst[:n])
		return 0, fmt.Errorf("%w: chunk %d", ErrAuthentication, o.chunk)
	}
	o.chunk++
	if len(p) >= n {
		return len(pt), nil
	}
	c := copy(p, pt)
	clear(pt[:c])
	o.pending = pt[c:]
	return c, nil
}

// readLength reads a chunk's varint length prefix, from what was read
// ahead with the last chunk and then from the source. The end of the
// stream here means the final chunk is missing.
func (o *chunkOpener) readLength() (uint64, error) {
	h := o.ahead
	if len(h) == 0 {
		if err := o.readFull(o.look[:1], "length of chunk (no final chunk)"); err != nil {
			return 0, err
		}
		h = o.look[:1]
	}
	l := 1 << (h[0] >> 6)
	if len(h) < l {
		k := copy(o.look[:], h)
		if err := o.readFull(o.look[k:l], "length of chunk"); err != nil {
			return 0, err
		}
		h = o.look[:l]
	}
	o.ahead = h[l:]
	v, _, err := quicvarint.Parse(h[:l])
	if err != nil {
		return 0, fmt.Errorf("%w: length of chunk %d: %v", ErrMalformed, o.chunk, err)
	}
	return v, nil
}

// readChunk reads a chunk of n bytes into dst[:n], beginning with what was
// read ahead past the chunk's length prefix, and, when dst is longer, up
// to lookLen bytes more, which it keeps in o.ahead: it never waits for more
// than the chunk.
func (o *chunkOpener) readChunk(dst []byte, n int) error {
	k := copy(dst[:n], o.ahead)
	o.ahead = nil
	m, err := io.ReadAtLeast(o.src, dst[k:min(len(dst), n+lookLen)], n-k)
	if err != nil {
		return readError(err, fmt.Sprintf("chunk %d", o.chunk))
	}
	o.ahead = o.look[:copy(o.look[:], dst[n:k+m])]
	return nil
}

// readFull fills p from the source; errors name what was read and the
// chunk's index (built only on failure: this is the per-chunk path).
func (o *chunkOpener) readFull(p []byte, what string) error {
	if _, err := io.ReadFull(o.src, p); err != nil {
		return readError(err, fmt.Sprintf("%s %d", what, o.chunk))
	}
	return nil
}

// final reads the final chunk, which extends to the end of the stream, and
// opens it with AAD "final": in p when p can hold the longest chunk and
// one more byte (to tell trailing data), in o.buf otherwise.
func (o *chunkOpener) final(p []byte) (int, error) {
	overhead := o.overhead
	inPlace := len(p) > o.maxCT
	var buf []byte
	if inPlace {
		buf = p[:o.maxCT+1]
	} else {
		buf = o.grow(o.initCap)
	}
	// What was read ahead with the last chunk begins the final one (buf
	// holds at least the tag and a byte, more than lookLen).
	n := copy(buf, o.ahead)
	o.ahead = nil
	for {
		if n == len(buf) {
			if n > o.maxCT {
				return 0, fmt.Errorf("%w: the final chunk exceeds %d bytes (trailing data?)", ErrChunkTooLarge, o.maxCT)
			}
			buf = o.growKeep(min(2*len(buf), o.maxCT+1), n)
		}
		m, err := o.src.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("twoway: read final chunk: %w", err)
		}
	}
	if n > o.maxCT {
		return 0, fmt.Errorf("%w: the final chunk exceeds %d bytes (trailing data?)", ErrChunkTooLarge, o.maxCT)
	}
	if n < overhead {
		return 0, truncated(fmt.Sprintf("final chunk (%d bytes, shorter than its %d-byte tag)", n, overhead))
	}
	pt, err := o.open(buf[:0], buf[:n], finalAAD)
	if err != nil {
		clear(buf[:n])
		return 0, fmt.Errorf("%w: final chunk (chunk %d)", ErrAuthentication, o.chunk)
	}
	o.done = true
	if len(pt) == 0 {
		return 0, io.EOF
	}
	if inPlace {
		return len(pt), nil
	}
	c := copy(p, pt)
	clear(pt[:c])
	o.pending = pt[c:]
	return c, nil
}

// grow returns o.buf resized to n bytes, reallocating when it is too small.
func (o *chunkOpener) grow(n int) []byte { return o.growKeep(n, 0) }

// growKeep is grow that preserves the first keep bytes of the buffer. A
// new buffer has lookLen bytes of capacity more, for next to read ahead.
func (o *chunkOpener) growKeep(n, keep int) []byte {
	if cap(o.buf) < n {
		b := make([]byte, max(n, o.initCap)+lookLen)
		copy(b, o.buf[:keep])
		clear(o.buf[:cap(o.buf)])
		o.buf = b
	}
	o.buf = o.buf[:n]
	return o.buf
}
