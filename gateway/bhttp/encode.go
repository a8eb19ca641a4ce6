package bhttp

import (
	"fmt"

	"github.com/quic-go/quic-go/quicvarint"
)

// The encoder appends to byte slices. Field names are lowercased as they
// are appended (RFC 9292 section 3.6); a name that is not a token, or a
// value the decoder would refuse, is an ErrMalformed error naming the field
// line.

// AppendRequest appends a whole request, in the framing req.Framing names:
// control data and header section from req, then content and trailer.
// req.Body and req.ContentLength are ignored.
func AppendRequest(dst []byte, req *Request, content []byte, trailer []Field) ([]byte, error) {
	if !req.Framing.Request() {
		return nil, malformed("framing %v is not a request's", req.Framing)
	}
	if err := checkControlData(req.Method, req.Scheme, req.Authority, req.Path); err != nil {
		return nil, err
	}
	dst = quicvarint.Append(dst, uint64(req.Framing))
	for _, s := range []string{req.Method, req.Scheme, req.Authority, req.Path} {
		dst = appendString(dst, s)
	}
	return appendRest(dst, req.Framing.KnownLength(), req.Header, content, trailer)
}

// AppendResponse appends a whole response, in the framing resp.Framing
// names: informational responses, final status code and header section from
// resp, then content and trailer. resp.Body and resp.ContentLength are
// ignored.
func AppendResponse(dst []byte, resp *Response, content []byte, trailer []Field) ([]byte, error) {
	if resp.Framing.Request() || resp.Framing > IndeterminateLengthResponse {
		return nil, malformed("framing %v is not a response's", resp.Framing)
	}
	known := resp.Framing.KnownLength()
	dst = quicvarint.Append(dst, uint64(resp.Framing))
	var err error
	for i, inf := range resp.Informational {
		if inf.Status < 100 || inf.Status > 199 {
			return nil, malformed("informational response %d has status %d", i, inf.Status)
		}
		dst = quicvarint.Append(dst, uint64(inf.Status))
		if dst, err = appendFieldSection(dst, known, inf.Header, "informational header section"); err != nil {
			return nil, err
		}
	}
	if resp.Status < 200 || resp.Status > 599 {
		return nil, malformed("final status %d is not 200 to 599", resp.Status)
	}
	dst = quicvarint.Append(dst, uint64(resp.Status))
	return appendRest(dst, known, resp.Header, content, trailer)
}

// appendRest appends a header section, content and trailer section.
func appendRest(dst []byte, known bool, header []Field, content []byte, trailer []Field) ([]byte, error) {
	dst, err := appendFieldSection(dst, known, header, "header section")
	if err != nil {
		return nil, err
	}
	if known {
		dst = quicvarint.Append(dst, uint64(len(content)))
		dst = append(dst, content...)
	} else {
		dst = AppendChunk(dst, content)
		dst = append(dst, 0)
	}
	return appendFieldSection(dst, known, trailer, "trailer section")
}

// AppendFramingIndicator appends a framing indicator: the start of a
// message encoded piece by piece.
func AppendFramingIndicator(dst []byte, f Framing) []byte {
	return quicvarint.Append(dst, uint64(f))
}

// AppendInformational appends an informational response (status 100 to
// 199) with its indeterminate-length header section, after the framing
// indicator of an indeterminate-length response and before its final head.
func AppendInformational(dst []byte, status int, header []Field) ([]byte, error) {
	if status < 100 || status > 199 {
		return nil, malformed("informational status %d is not 100 to 199", status)
	}
	dst = quicvarint.Append(dst, uint64(status))
	return appendFieldSection(dst, false, header, "informational header section")
}

// AppendFinalHead appends the final status code (200 to 599) and the
// indeterminate-length header section of a response; content chunks
// ([AppendChunk]) and [AppendEnd] follow.
func AppendFinalHead(dst []byte, status int, header []Field) ([]byte, error) {
	if status < 200 || status > 599 {
		return nil, malformed("final status %d is not 200 to 599", status)
	}
	dst = quicvarint.Append(dst, uint64(status))
	return appendFieldSection(dst, false, header, "header section")
}

// AppendRequestHead appends the framing indicator, control data and
// indeterminate-length header section of a request; content chunks
// ([AppendChunk]) and [AppendEnd] follow. req.Framing is ignored.
func AppendRequestHead(dst []byte, req *Request) ([]byte, error) {
	if err := checkControlData(req.Method, req.Scheme, req.Authority, req.Path); err != nil {
		return nil, err
	}
	dst = quicvarint.Append(dst, uint64(IndeterminateLengthRequest))
	for _, s := range []string{req.Method, req.Scheme, req.Authority, req.Path} {
		dst = appendString(dst, s)
	}
	return appendFieldSection(dst, false, req.Header, "header section")
}

// AppendChunk appends p as one indeterminate-length content chunk. An
// empty p appends nothing (an empty chunk would end the content).
func AppendChunk(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	dst = quicvarint.Append(dst, uint64(len(p)))
	return append(dst, p...)
}

// AppendChunkHeader appends the length prefix of an indeterminate-length
// content chunk of n > 0 bytes, for a caller that appends the n bytes
// itself.
func AppendChunkHeader(dst []byte, n int) []byte {
	return quicvarint.Append(dst, uint64(n))
}

// AppendEnd ends an indeterminate-length message: the content terminator
// and the trailer section.
func AppendEnd(dst []byte, trailer []Field) ([]byte, error) {
	return appendFieldSection(append(dst, 0), false, trailer, "trailer section")
}

// AppendPadding appends n zero bytes of padding (RFC 9292 section 3.8).
func AppendPadding(dst []byte, n int) []byte {
	for range n {
		dst = append(dst, 0)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = quicvarint.Append(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendFieldSection appends a field section; names are lowercased.
func appendFieldSection(dst []byte, known bool, fields []Field, what string) ([]byte, error) {
	size := 0
	for i, f := range fields {
		if err := checkEncodedField(f, what, i); err != nil {
			return nil, err
		}
		size += quicvarint.Len(uint64(len(f.Name))) + len(f.Name) + quicvarint.Len(uint64(len(f.Value))) + len(f.Value)
	}
	if known {
		dst = quicvarint.Append(dst, uint64(size))
	}
	for _, f := range fields {
		dst = quicvarint.Append(dst, uint64(len(f.Name)))
		for i := 0; i < len(f.Name); i++ {
			c := f.Name[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		dst = appendString(dst, f.Value)
	}
	if !known {
		dst = append(dst, 0)
	}
	return dst, nil
}

func checkEncodedField(f Field, what string, i int) error {
	if f.Name == "" {
		return malformed("%s: field line %d has an empty name", what, i)
	}
	for j := 0; j < len(f.Name); j++ {
		if !isTchar(f.Name[j]) {
			return malformed("%s: field line %d: name has byte 0x%02x at byte %d, which is not a token character", what, i, f.Name[j], j)
		}
	}
	if err := checkValue([]byte(f.Value)); err != nil {
		return fmt.Errorf("%w: %s: field line %d: value %v", ErrMalformed, what, i, err)
	}
	return nil
}
