package twoway

import (
	"fmt"
	"io"
	"os"
	"slices"
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
	buf, n, err := readAll(src, len(prefix), ctx.Overhead(), -1)
	if err != nil {
		return nil, fmt.Errorf("twoway: read plaintext: %w", err)
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
	return r.chunks.maxCiphertextChunkLen(), true
}

// newOpenedReader opens the body in src with ctx. An unchunked body is read
// (at most cfg.maxMessageLen bytes) and authenticated now, so a forged
// message fails here; a chunked body is opened as it is read.
func newOpenedReader(src io.Reader, ctx openCtx, cfg *opConfig) (io.Reader, error) {
	if cfg.chunked {
		return newChunkOpener(src, ctx, cfg), nil
	}
	buf, n, err := readAll(src, 0, 0, cfg.maxMessageLen)
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
// head+n+tail) and n. When src reports its length (Len, or a regular file)
// the buffer is allocated once at its exact size. With limit >= 0, more
// than limit bytes is ErrMessageTooLarge, detected before allocating when
// the length is known.
func readAll(src io.Reader, head, tail, limit int) ([]byte, int, error) {
	hint, known := sizeHint(src)
	if limit >= 0 && known && hint > limit {
		return nil, 0, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, hint, limit)
	}
	if !known {
		hint = 512
	}
	buf := make([]byte, head+hint+tail)
	n := 0
	var probe [1]byte
	for {
		if head+n == len(buf)-tail {
			// Full: probe for the end before growing, so that an exact
			// size hint costs no reallocation.
			m, err := src.Read(probe[:])
			if m > 0 {
				if limit >= 0 && n+1 > limit {
					clear(buf)
					return nil, 0, fmt.Errorf("%w: more than %d bytes", ErrMessageTooLarge, limit)
				}
				grown := slices.Grow(buf[:head+n], max(n, 512)+tail)
				grown = grown[:cap(grown)]
				clear(buf)
				buf = grown
				buf[head+n] = probe[0]
				n++
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				clear(buf)
				return nil, 0, err
			}
			continue
		}
		m, err := src.Read(buf[head+n : len(buf)-tail])
		n += m
		if limit >= 0 && n > limit {
			clear(buf)
			return nil, 0, fmt.Errorf("%w: more than %d bytes", ErrMessageTooLarge, limit)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			clear(buf)
			return nil, 0, err
		}
	}
	return buf[:head+n+tail], n, nil
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
