package twoway_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// countingWriter counts its Writes and takes at most limit bytes in all
// (any number when limit < 0), reporting no error for a short write. It
// has no ReadFrom, which io.Copy would take instead of Write.
type countingWriter struct {
	buf    bytes.Buffer
	writes int
	limit  int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.limit >= 0 {
		p = p[:min(len(p), w.limit-w.buf.Len())]
	}
	return w.buf.Write(p)
}

func (w *countingWriter) Bytes() []byte { return w.buf.Bytes() }

// TestResponseSealerWriteTo: WriteTo writes the bytes Read returns, for a
// response sealed with the same nonce; unchunked, in one Write, after which
// nothing is left to read (Len 0, Read io.EOF), and what a short write
// leaves is still read; a short write is io.ErrShortWrite; and the response
// opens.
func TestResponseSealerWriteTo(t *testing.T) {
	pk, sk := keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "writeto")
	snd, _ := twoway.NewRequestSender(testSuite, 1, pk, nil)
	pt := pattern(5000)
	for _, tc := range []struct {
		name string
		opts []twoway.Option
	}{
		{"unchunked", nil},
		{"chunked", []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(1024)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := snd.NewRequestSealer(bytes.NewReader([]byte("q")), []byte("q"), tc.opts...)
			ct, _ := io.ReadAll(s)
			// Each sealer comes from an opener of its own, whose receiver
			// draws the same response nonce.
			sealer := func() *twoway.ResponseSealer {
				t.Helper()
				rcv, _ := twoway.NewRequestReceiver(testSuite, 1, sk, newDetRand("nonce"))
				o, err := rcv.NewRequestOpener(bytes.NewReader(ct), []byte("q"), tc.opts...)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, o)
				rs, err := o.NewResponseSealer(bytes.NewReader(pt), []byte("a"), tc.opts...)
				if err != nil {
					t.Fatal(err)
				}
				return rs
			}
			want, err := io.ReadAll(struct{ io.Reader }{sealer()})
			if err != nil {
				t.Fatal(err)
			}

			rs := sealer()
			w := &countingWriter{limit: -1}
			n, err := rs.WriteTo(w)
			if err != nil || n != int64(len(want)) || !bytes.Equal(w.Bytes(), want) {
				t.Fatalf("WriteTo: %d bytes, %v; identical to Read's %d bytes: %v", n, err, len(want), bytes.Equal(w.Bytes(), want))
			}
			if m, err := rs.Read(make([]byte, 1)); m != 0 || err != io.EOF {
				t.Errorf("Read after WriteTo: %d, %v", m, err)
			}
			if _, chunked := rs.MaxCiphertextChunkLen(); !chunked {
				if w.writes != 1 {
					t.Errorf("unchunked WriteTo made %d Writes", w.writes)
				}
				if l, ok := rs.Len(); l != 0 || !ok {
					t.Errorf("Len after WriteTo: %d, %v", l, ok)
				}
			}
			// io.Copy takes WriteTo too
			var c bytes.Buffer
			if _, err := io.Copy(&c, sealer()); err != nil || !bytes.Equal(c.Bytes(), want) {
				t.Errorf("io.Copy: %v, identical: %v", err, bytes.Equal(c.Bytes(), want))
			}

			rs = sealer()
			short := &countingWriter{limit: 100}
			n, err = rs.WriteTo(short)
			if n != 100 || !errors.Is(err, io.ErrShortWrite) {
				t.Errorf("short write: %d, %v", n, err)
			}
			if _, chunked := rs.MaxCiphertextChunkLen(); !chunked {
				rest, err := io.ReadAll(rs)
				if err != nil || !bytes.Equal(append(short.Bytes(), rest...), want) {
					t.Errorf("after a short write, Read returns the rest: %v", err)
				}
			}

			ro, err := s.NewResponseOpener(bytes.NewReader(w.Bytes()), []byte("a"), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(ro)
			if err != nil || !bytes.Equal(got, pt) {
				t.Errorf("open: %d bytes, %v", len(got), err)
			}
		})
	}
}
