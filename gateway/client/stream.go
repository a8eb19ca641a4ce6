package client

import (
	"fmt"
	"io"

	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
)

// StreamRequest returns an indeterminate-length Binary HTTP request
// (RFC 9292) read as body is: head (from bhttp.AppendRequestHead with
// bhttp.IndeterminateLengthRequest), then a content chunk per Read of
// body (of at most 16 KiB), then the end (no trailers). Sent with
// Exchange's chunked, each Read of body becomes an OHTTP chunk at once, so
// what body delivers reaches the gateway as it arrives. A nil body sends
// no content.
func StreamRequest(head []byte, body io.Reader) io.Reader {
	if body == nil {
		body = eof{}
	}
	return &streamedRequest{head: head, body: body}
}

type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// streamedRequest is StreamRequest's reader.
type streamedRequest struct {
	head    []byte
	body    io.Reader
	buf     [16 << 10]byte
	enc     []byte // the last chunk encoded, whose rest is pending; reused
	pending []byte
	done    bool
}

func (s *streamedRequest) Read(p []byte) (int, error) {
	for len(s.pending) == 0 && len(s.head) == 0 {
		if s.done {
			return 0, io.EOF
		}
		n, err := s.body.Read(s.buf[:])
		s.enc = s.enc[:0] // read to its end: reused
		if n > 0 {
			s.enc = bhttp.AppendChunk(s.enc, s.buf[:n])
		}
		if err == io.EOF {
			end, eerr := bhttp.AppendEnd(s.enc, nil)
			if eerr != nil {
				return 0, eerr
			}
			s.enc, s.done = end, true
		} else if err != nil {
			return 0, fmt.Errorf("client: read the request body: %w", err)
		}
		s.pending = s.enc
	}
	if len(s.head) > 0 {
		n := copy(p, s.head)
		s.head = s.head[n:]
		return n, nil
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}
