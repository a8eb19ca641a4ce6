package client

import (
	"bytes"
	"io"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
)

// endless returns len(p) bytes of x on every Read.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestStreamedRequestReuse: a streamed request encodes each chunk into the
// same buffer (no allocation per Read in steady state), and what it reads
// decodes to the head and the body.
func TestStreamedRequestReuse(t *testing.T) {
	s := &streamedRequest{body: endless{}}
	p := make([]byte, 32<<10)
	s.Read(p)
	if a := testing.AllocsPerRun(100, func() { s.Read(p) }); a != 0 {
		t.Errorf("%v allocations per Read", a)
	}

	inner := &bhttp.Request{Framing: bhttp.IndeterminateLengthRequest, Method: "PUT", Scheme: "https", Authority: "o.example", Path: "/"}
	head, err := bhttp.AppendRequestHead(nil, inner)
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	msg, err := io.ReadAll(&streamedRequest{head: head, body: bytes.NewReader(content)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := bhttp.ReadRequest(bytes.NewReader(msg), bhttp.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r.Body); err != nil || !bytes.Equal(got, content) {
		t.Errorf("%d bytes, %v", len(got), err)
	}
}
