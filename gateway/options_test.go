package gateway_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// TestResponseChunkLen: WithResponseChunkLen takes 64 to 16384 bytes, and
// no chunk of a chunked response then seals more plaintext than it says.
func TestResponseChunkLen(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 63, 16385} {
		if _, err := gateway.New(newKeys(t), echo, gateway.WithResponseChunkLen(n)); err == nil {
			t.Errorf("WithResponseChunkLen(%d) accepted", n)
		}
	}
	for _, n := range []int{64, 16384} {
		if _, err := gateway.New(newKeys(t), echo, gateway.WithResponseChunkLen(n)); err != nil {
			t.Errorf("WithResponseChunkLen(%d): %v", n, err)
		}
	}

	const chunkLen = 64
	srv, _, _ := start(t, echo, gateway.WithResponseChunkLen(chunkLen))
	c := newClient(t, srv)
	content := bytes.Repeat([]byte("0123456789"), 100)
	x, err := c.send(context.Background(), bytes.NewReader(encodeRequest(t, bhttp.IndeterminateLengthRequest, "POST", "/", nil, content, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer x.outer.Body.Close()
	raw, err := io.ReadAll(x.outer.Body)
	if err != nil || x.outer.StatusCode != 200 || x.outer.Header.Get("Content-Type") != gateway.ChunkedResponseMediaType {
		t.Fatalf("outer %s %q: %v", x.outer.Status, x.outer.Header.Get("Content-Type"), err)
	}
	// response nonce (max(Nn, Nk) = 16 for AES-128-GCM), then chunks: a
	// length and that much ciphertext (the plaintext and a 16-byte tag),
	// and a final chunk after a zero length, to the end
	const nonceLen, tagLen = 16, 16
	rest, chunks := raw[nonceLen:], 0
	for {
		l, n, err := quicvarint.Parse(rest)
		if err != nil {
			t.Fatalf("chunk %d: %v", chunks, err)
		}
		rest = rest[n:]
		if l == 0 {
			if len(rest) < tagLen || len(rest) > chunkLen+tagLen {
				t.Errorf("final chunk of %d bytes of ciphertext", len(rest))
			}
			break
		}
		if l > uint64(len(rest)) || l > chunkLen+tagLen {
			t.Fatalf("chunk %d: %d bytes of ciphertext, %d left", chunks, l, len(rest))
		}
		rest = rest[l:]
		chunks++
	}
	if chunks < len(content)/chunkLen {
		t.Errorf("%d chunks for %d bytes of content", chunks, len(content))
	}
	o, err := x.sealer.NewResponseOpener(bytes.NewReader(raw), []byte(gateway.ChunkedResponseLabel), twoway.EnableChunking())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := bhttp.ReadResponse(o, bhttp.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.Status != 200 || !bytes.Equal(got, content) {
		t.Errorf("inner %d, %d bytes, %v", resp.Status, len(got), err)
	}
}
