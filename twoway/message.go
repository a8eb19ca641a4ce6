package twoway

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// sealedReader is the ciphertext side of every sealer: a prefix (header and
// encapsulated key, or response nonce) followed by the sealed body, either
// whole or in chunks.
type sealedReader struct {
	headerLen int
	// unchunked: the whole remaining output, prefix included.
	out []byte
	// chunked: the prefix not yet returned, then the chunk stream.
	prefix []byte
	chunks *chunkSealer
}

// newSealedReader seals src with ctx behind prefix. An unchunked message is
// read and sealed now, in place in one buffer that holds exactly the output;
// a chunked one is sealed as it is read.
func newSealedReader(prefix []byte, src io.Reader, ctx sealCtx, cfg *opConfig) (*sealedReader, error) {
	if src == nil {
		return nil, fmt.Errorf("twoway: nil plaintext reader")
	}
	r := &sealedReader{headerLen: len(prefix)}
	if cfg.chunked {
		r.prefix = prefix
		r.chunks = newChunkSealer(src, ctx, cfg)
		return r, nil
	}
	buf, n, err := readAll(src, "plaintext", len(prefix), ctx.Overhead(), -1, cfg.lengthHint)
	if err != nil {
		return nil, err
	}
	copy(buf, prefix)
	body := buf[len(prefix) : len(prefix)+n]
	ct, err := ctx.Seal(body[:0], body, nil)
	if err != nil {
		clear(body)
		return nil, fmt.Errorf("twoway: seal: %w", err)
	}
	if &ct[:1][0] != &buf[len(prefix)] {
		clear(body)
		return nil, fmt.Errorf("twoway: seal: sealer did not write in place")
	}
	r.out = buf[:len(prefix)+len(ct)]
	return r, nil
}

func (r *sealedReader) Read(p []byte) (int, error) {
	if r.chunks == nil {
		if len(r.out) == 0 {
			return 0, io.EOF
		}
		n := copy(p, r.out)
		r.out = r.out[n:]
		return n, nil
	}
	n := copy(p, r.prefix)
	r.prefix = r.prefix[n:]
	if n == len(p) {
		return n, nil
	}
	m, err := r.chunks.Read(p[n:])
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n + m, err
}

// WriteTo writes the rest of the message to w. An unchunked message, sealed
// whole already, goes in one Write of the sealed bytes (so that a writer such
// as net/http's ResponseWriter never takes the io.ReaderFrom path, nor a copy
// through a buffer), and what w does not take stays to be read; a chunked
// one is copied as io.Copy copies a Reader.
func (r *sealedReader) WriteTo(w io.Writer) (int64, error) {
	if r.chunks != nil {
		return io.Copy(w, readerOnly{r})
	}
	if len(r.out) == 0 {
		return 0, nil
	}
	n, err := w.Write(r.out)
	if n < 0 || n > len(r.out) {
		return 0, fmt.Errorf("twoway: the writer returned %d for a write of %d bytes", n, len(r.out))
	}
	r.out = r.out[n:]
	if err == nil && len(r.out) > 0 {
		err = io.ErrShortWrite
	}
	return int64(n), err
}

// readerOnly hides a reader's WriteTo from io.Copy.
type readerOnly struct{ io.Reader }

// WriteTo writes the rest of the encapsulated response to w: an unchunked
// response in one Write, a chunked one chunk by chunk (see Read). It makes
// io.Copy(w, s) write an unchunked response whole rather than through w's
// ReadFrom or a buffer.
func (s *ResponseSealer) WriteTo(w io.Writer) (int64, error) { return s.r.WriteTo(w) }

// Len returns the number of ciphertext bytes left to read, header included,
// and true; for a chunked message, whose length is not known in advance, it
// returns 0 and false.
func (r *sealedReader) Len() (int, bool) {
	if r.chunks != nil {
		return 0, false
	}
	return len(r.out), true
}

// HeaderLen returns the length of the prefix that precedes the body.
func (r *sealedReader) HeaderLen() int { return r.headerLen }

// MaxCiphertextChunkLen returns the longest chunk a chunked message
// contains, length prefix included, and true; for an unchunked message it
// returns 0 and false.
func (r *sealedReader) MaxCiphertextChunkLen() (int, bool) {
	if r.chunks == nil {
		return 0, false
	}
	return r.chunks.maxChunk, true
}

// newOpenedReader opens the body in src with ctx. An unchunked body is read
// (at most cfg.maxMessageLen bytes) and authenticated now, so a forged
// message fails here; a chunked body is opened as it is read.
//
// consumed is the number of bytes of the message already read (header,
// encapsulated key, nonce), which a length hint covers too.
func newOpenedReader(src io.Reader, ctx openCtx, cfg *opConfig, consumed int) (io.Reader, error) {
	if cfg.chunked {
		return newChunkOpener(src, ctx, cfg), nil
	}
	hint := cfg.lengthHint
	if hint >= 0 {
		hint = max(hint-consumed, 0)
	}
	buf, n, err := readAll(src, "ciphertext", 0, 0, cfg.maxMessageLen, hint)
	if err != nil {
		return nil, err
	}
	if n < ctx.Overhead() {
		return nil, truncated(fmt.Sprintf("ciphertext of %d bytes, shorter than its %d-byte tag", n, ctx.Overhead()))
	}
	pt, err := ctx.Open(buf[:0], buf[:n], nil)
	if err != nil {
		clear(buf)
		return nil, ErrAuthentication
	}
	return &plainReader{pt: pt}, nil
}

// plainReader returns an opened unchunked message and zeroes what it has
// returned.
type plainReader struct{ pt []byte }

func (r *plainReader) Read(p []byte) (int, error) {
	if len(r.pt) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.pt)
	clear(r.pt[:n])
	r.pt = r.pt[n:]
	return n, nil
}

// readAll reads src to its end into a buffer with head free bytes before the
// data and room for tail bytes after it, and returns the buffer (length
// head+n+tail) and n. When the length is known (hint >= 0, or src reports
// it: Len, or a regular file) the buffer is allocated once at its exact
// size. Otherwise the data is read into a list of growing blocks and copied
// once into an exact buffer at the end, so that memory peaks at twice the
// message rather than the three times that growing one slice can cost.
// With limit >= 0, more than limit bytes is ErrMessageTooLarge, detected
// before allocating when the length is known. An error of src is wrapped
// with what was being read.
func readAll(src io.Reader, what string, head, tail, limit, hint int) ([]byte, int, error) {
	if hint < 0 {
		if n, ok := sizeHint(src); ok {
			hint = n
		}
	}
	if limit >= 0 && hint > limit {
		return nil, 0, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, hint, limit)
	}
	var blocks [][]byte
	total := 0
	defer func() {
		for _, b := range blocks {
			clear(b)
		}
	}()
	if hint >= 0 {
		buf := make([]byte, head+hint+tail)
		n, err := io.ReadFull(src, buf[head:head+hint])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return buf[:head+n+tail], n, nil // shorter than announced
		}
		if err != nil {
			clear(buf)
			return nil, 0, fmt.Errorf("twoway: read %s: %w", what, err)
		}
		// Probe for the end: an exact hint costs no reallocation.
		var probe [1]byte
		m, err := io.ReadFull(src, probe[:])
		if m == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
			return buf, n, nil
		}
		if err != nil && m == 0 {
			clear(buf)
			return nil, 0, fmt.Errorf("twoway: read %s: %w", what, err)
		}
		// Longer than announced: go on with blocks.
		blocks = append(blocks, buf[head:head+n], bytes.Clone(probe[:m]))
		total = n + m
	}
	size := 4096
	for {
		if limit >= 0 && total > limit {
			return nil, 0, fmt.Errorf("%w: more than %d bytes", ErrMessageTooLarge, limit)
		}
		want := size
		if limit >= 0 {
			want = min(size, limit+1-total) // never read far past the limit
		}
		b := make([]byte, want)
		n, err := io.ReadFull(src, b)
		if n > 0 {
			blocks = append(blocks, b[:n])
			total += n
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("twoway: read %s: %w", what, err)
		}
		size = min(2*size, 1<<20)
	}
	if limit >= 0 && total > limit {
		return nil, 0, fmt.Errorf("%w: more than %d bytes", ErrMessageTooLarge, limit)
	}
	buf := make([]byte, head+total+tail)
	off := head
	for _, b := range blocks {
		off += copy(buf[off:], b)
	}
	return buf, total, nil
}

// sizeHint returns the number of bytes left in src when src can tell.
func sizeHint(src io.Reader) (int, bool) {
	switch s := src.(type) {
	case interface{ Len() int }:
		return s.Len(), true
	case *os.File:
		fi, err := s.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		off, err := s.Seek(0, io.SeekCurrent)
		if err != nil || off > fi.Size() {
			return 0, false
		}
		return int(fi.Size() - off), true
	}
	return 0, false
}
