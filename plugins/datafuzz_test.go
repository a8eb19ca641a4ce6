//go:build unix

package plugins

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"syscall"
	"testing"
	"time"
)

// checkDecoder runs decode over b frame by frame and checks what it
// claims: a frame it accepts is a whole header plus its payload, within
// the bounds, and its header encodes back to the same bytes.
func checkDecoder(t *testing.T, b []byte, decode func([]byte) (frame, int, error), max int) {
	for len(b) > 0 {
		f, size, err := decode(b)
		if err != nil || size == 0 {
			if err == nil && len(b) >= frameHeaderSize && frameHeaderSize+f.n <= len(b) {
				t.Fatalf("a whole frame (%d of %d bytes) was not decoded", frameHeaderSize+f.n, len(b))
			}
			if err != nil && !errors.Is(err, errProtocol) {
				t.Fatalf("an error that is not a protocol violation: %v", err)
			}
			return
		}
		if size < frameHeaderSize || size > len(b) || size > frameHeaderSize+max || size != frameHeaderSize+f.n {
			t.Fatalf("frame of %d bytes from %d (payload %d, at most %d)", size, len(b), f.n, max)
		}
		var hdr [frameHeaderSize]byte
		putHeader(hdr[:], f)
		if !bytes.Equal(hdr[:], b[:frameHeaderSize]) {
			t.Fatalf("header %x decodes to %+v, which encodes to %x", b[:frameHeaderSize], f, hdr)
		}
		b = b[size:]
	}
}

// FuzzPluginReceive: whatever a host sends, the plugin's decoder keeps its
// bounds, and a dataServer fed those bytes neither panics nor hangs: it
// ends when the host's side ends.
func FuzzPluginReceive(f *testing.F) {
	f.Add(hdrOf(frame{kind: frameECDH, id: 1, n: 0}))
	f.Add(append(hdrOf(frame{kind: frameECDH, id: 1, n: 3})[:frameHeaderSize], 1, 2, 3))
	f.Add(withLength(frame{kind: frameECDH, id: 1}, math.MaxUint32))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecoder(t, b, decodeRequest, maxRequestPayload)
		host, plug := pair(t)
		s := server(t, context.Background(), &fakeBackend{}, plug)
		served := make(chan error, 1)
		go func() { served <- s.serve() }()
		drained := make(chan struct{})
		defer func() { <-drained; host.close() }()
		go func() { // the host reads the answers until the plugin's end closes
			defer close(drained)
			buf := make([]byte, 4096)
			for {
				if n, err := syscall.Read(host.r, buf); n <= 0 && err == nil || err != nil && err != syscall.EINTR {
					return
				}
			}
		}()
		for rest := b; len(rest) > 0; {
			n, err := syscall.Write(host.w, rest)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				break // the plugin stopped reading: it found a violation
			}
			rest = rest[n:]
		}
		syscall.Shutdown(host.w, syscall.SHUT_WR)
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, errProtocol) {
				t.Fatalf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the plugin hangs")
		}
	})
}

// FuzzHostReceive: whatever a plugin answers to a call (id 1), the host's
// decoder keeps its bounds, and the call returns in time: with a result
// of the plugin's, or an error.
func FuzzHostReceive(f *testing.F) {
	f.Add(append(hdrOf(frame{kind: frameResult, id: 1, n: 2})[:frameHeaderSize], 2, 1))
	f.Add(append(hdrOf(frame{kind: frameError, code: 3, id: 1, n: 3})[:frameHeaderSize], 'b', 'a', 'd'))
	f.Add(withLength(frame{kind: frameResult, id: 1}, math.MaxUint32))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecoder(t, b, decodeResponse, maxResponsePayload)
		host, plug := pair(t)
		pc := peer(t, plug)
		d, err := newDataConn(host)
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		go func() {
			var req [frameHeaderSize + 2]byte
			if _, err := io.ReadFull(pc, req[:]); err != nil {
				return
			}
			pc.Write(b)
			pc.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		out, err := callECDH(ctx, d, keyK, []byte{1, 2})
		if time.Since(start) > 6*time.Second {
			t.Fatalf("the call took %v", time.Since(start))
		}
		if err == nil && len(out) > maxResultSize {
			t.Fatalf("a result of %d bytes", len(out))
		}
	})
}
