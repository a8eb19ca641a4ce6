package bhttp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// decoder reads one message from a buffered source and keeps track of the
// limits and of where it is, for error messages.
type decoder struct {
	br  *bufio.Reader
	lim Limits
}

// readBufferLen is the size of the decoder's read buffer. The decoder
// returns content as soon as the source delivers it: the buffer never waits
// to be filled.
const readBufferLen = 4096

func newDecoder(r io.Reader, lim Limits) *decoder {
	return &decoder{br: bufio.NewReaderSize(r, readBufferLen), lim: lim.withDefaults()}
}

// readError is the error for err, returned by the source while reading
// what: the end of the stream is ErrTruncated, anything else is the
// source's own error.
func readError(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return truncated(what)
	}
	return fmt.Errorf("bhttp: read %s: %w", what, err)
}

// varint reads a variable-length integer (RFC 9000 section 16). It returns
// atEOF when the stream ends before its first byte, which callers treat as
// truncation or as an allowed end; an end inside it is ErrTruncated.
func (d *decoder) varint(what string) (v uint64, n int, atEOF bool, err error) {
	b, err := d.br.ReadByte()
	if err == io.EOF {
		return 0, 0, true, nil
	}
	if err != nil {
		return 0, 0, false, readError(err, what)
	}
	n = 1 << (b >> 6)
	v = uint64(b & 0x3f)
	for i := 1; i < n; i++ {
		b, err = d.br.ReadByte()
		if err != nil {
			return 0, 0, false, readError(err, what)
		}
		v = v<<8 | uint64(b)
	}
	return v, n, false, nil
}

// mustVarint is varint where the end of the stream is ErrTruncated.
func (d *decoder) mustVarint(what string) (uint64, int, error) {
	v, n, atEOF, err := d.varint(what)
	if err == nil && atEOF {
		err = truncated(what)
	}
	return v, n, err
}

// readN reads exactly n bytes, which the caller has bounded.
func (d *decoder) readN(n uint64, what string) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(d.br, b); err != nil {
		return nil, readError(err, what)
	}
	return b, nil
}

// framing reads the framing indicator.
func (d *decoder) framing() (Framing, error) {
	v, _, err := d.mustVarint("framing indicator")
	if err != nil {
		return 0, err
	}
	if v > 3 {
		return 0, malformed("framing indicator %d is not one of RFC 9292's (0 to 3)", v)
	}
	return Framing(v), nil
}

// ReadRequest reads a request's framing indicator, control data and header
// section from r, and returns the request with a Body that streams its
// content from r. r is read through a buffer: the caller must not read r
// again before the body has returned io.EOF or an error.
func ReadRequest(r io.Reader, lim Limits) (*Request, error) {
	d := newDecoder(r, lim)
	f, err := d.framing()
	if err != nil {
		return nil, err
	}
	if !f.Request() {
		return nil, malformed("framing indicator %d is a response, not a request", uint8(f))
	}
	req := &Request{Framing: f}
	if err := d.controlData(req); err != nil {
		return nil, err
	}
	h, _, err := d.fieldSection("header section", f.KnownLength(), false)
	if err != nil {
		return nil, err
	}
	req.Header = h
	req.Body, req.ContentLength, err = d.body(f.KnownLength())
	if err != nil {
		return nil, err
	}
	return req, nil
}

// ReadResponse reads a response's framing indicator, informational
// responses, final status code and header section from r, and returns the
// response with a Body that streams its content from r. r is read through a
// buffer: the caller must not read r again before the body has returned
// io.EOF or an error.
func ReadResponse(r io.Reader, lim Limits) (*Response, error) {
	d := newDecoder(r, lim)
	f, err := d.framing()
	if err != nil {
		return nil, err
	}
	if f.Request() {
		return nil, malformed("framing indicator %d is a request, not a response", uint8(f))
	}
	resp := &Response{Framing: f}
	for {
		code, _, err := d.mustVarint("status code")
		if err != nil {
			return nil, err
		}
		switch {
		case code >= 100 && code <= 199:
			if len(resp.Informational) == d.lim.MaxInformational {
				return nil, tooLarge("more than %d informational responses", d.lim.MaxInformational)
			}
			what := fmt.Sprintf("header section of informational response %d", len(resp.Informational))
			h, _, err := d.fieldSection(what, f.KnownLength(), false)
			if err != nil {
				return nil, err
			}
			resp.Informational = append(resp.Informational, Informational{Status: int(code), Header: h})
			continue
		case code >= 200 && code <= 599:
		default:
			return nil, malformed("status code %d is neither informational (100 to 199) nor final (200 to 599)", code)
		}
		resp.Status = int(code)
		break
	}
	h, _, err := d.fieldSection("header section", f.KnownLength(), false)
	if err != nil {
		return nil, err
	}
	resp.Header = h
	resp.Body, resp.ContentLength, err = d.body(f.KnownLength())
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// controlData reads a request's method, scheme, authority and path (RFC
// 9292 section 3.4), which follow HTTP/2's rules for the corresponding
// pseudo-fields.
func (d *decoder) controlData(req *Request) error {
	budget := uint64(d.lim.MaxControlDataLen)
	parts := [4]struct {
		what string
		dst  *string
	}{{"method", &req.Method}, {"scheme", &req.Scheme}, {"authority", &req.Authority}, {"path", &req.Path}}
	for _, p := range parts {
		l, n, err := d.mustVarint("length of the " + p.what)
		if err != nil {
			return err
		}
		if uint64(n) > budget || l > budget-uint64(n) {
			return tooLarge("request control data exceeds %d bytes (at the %s, of %d bytes)", d.lim.MaxControlDataLen, p.what, l)
		}
		budget -= uint64(n) + l
		b, err := d.readN(l, p.what)
		if err != nil {
			return err
		}
		*p.dst = string(b)
	}
	return checkControlData(req.Method, req.Scheme, req.Authority, req.Path)
}

// fieldSection reads a known-length or indeterminate-length field section.
// With allowEOF, a stream that ends where the section would start is an
// empty section (truncation, RFC 9292 section 3.8) and atEOF is true.
func (d *decoder) fieldSection(what string, known, allowEOF bool) (fields []Field, atEOF bool, err error) {
	max := uint64(d.lim.MaxFieldSectionLen)
	if known {
		l, _, atEOF, err := d.varint("length of the " + what)
		if err != nil {
			return nil, false, err
		}
		if atEOF {
			if allowEOF {
				return nil, true, nil
			}
			return nil, false, truncated("length of the " + what)
		}
		if l > max {
			return nil, false, tooLarge("%s of %d bytes, the limit is %d", what, l, max)
		}
		b, err := d.readN(l, what)
		if err != nil {
			return nil, false, err
		}
		fields, err = parseFieldLines(b, what)
		return fields, false, err
	}
	var used uint64
	for i := 0; ; i++ {
		nl, n, atEOF, err := d.varint(what)
		if err != nil {
			return nil, false, err
		}
		if atEOF {
			if i == 0 && allowEOF {
				return nil, true, nil
			}
			return nil, false, truncated(fmt.Sprintf("%s: field line %d (no terminator)", what, i))
		}
		if nl == 0 {
			return fields, false, nil
		}
		used += uint64(n)
		if used > max || nl > max-used {
			return nil, false, tooLarge("%s exceeds %d bytes (at field line %d)", what, max, i)
		}
		used += nl
		name, err := d.readN(nl, fmt.Sprintf("%s: name of field line %d", what, i))
		if err != nil {
			return nil, false, err
		}
		vl, n, err := d.mustVarint(fmt.Sprintf("%s: value length of field line %d", what, i))
		if err != nil {
			return nil, false, err
		}
		used += uint64(n)
		if used > max || vl > max-used {
			return nil, false, tooLarge("%s exceeds %d bytes (at field line %d)", what, max, i)
		}
		used += vl
		value, err := d.readN(vl, fmt.Sprintf("%s: value of field line %d", what, i))
		if err != nil {
			return nil, false, err
		}
		f, err := newField(name, value, what, i)
		if err != nil {
			return nil, false, err
		}
		fields = append(fields, f)
	}
}

// parseFieldLines parses the field lines of a known-length field section.
func parseFieldLines(b []byte, what string) ([]Field, error) {
	var fields []Field
	for i := 0; len(b) > 0; i++ {
		name, rest, err := lengthPrefixed(b, what, i, "name")
		if err != nil {
			return nil, err
		}
		if len(name) == 0 {
			return nil, malformed("%s: field line %d has an empty name", what, i)
		}
		value, rest, err := lengthPrefixed(rest, what, i, "value")
		if err != nil {
			return nil, err
		}
		f, err := newField(name, value, what, i)
		if err != nil {
			return nil, err
		}
		fields = append(fields, f)
		b = rest
	}
	return fields, nil
}

// lengthPrefixed splits a length-prefixed byte string off the start of b.
func lengthPrefixed(b []byte, what string, line int, part string) (v, rest []byte, err error) {
	l, n, ok := parseVarint(b)
	if !ok || l > uint64(len(b)-n) {
		return nil, nil, malformed("%s: the %s of field line %d overruns the section", what, part, line)
	}
	return b[n : n+int(l)], b[n+int(l):], nil
}

// parseVarint parses a variable-length integer at the start of b.
func parseVarint(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0, false
	}
	v = uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n, true
}

func newField(name, value []byte, what string, line int) (Field, error) {
	if err := checkName(name); err != nil {
		return Field{}, malformed("%s: field line %d: name %v", what, line, err)
	}
	if err := checkValue(value); err != nil {
		return Field{}, malformed("%s: field line %d: value %v", what, line, err)
	}
	return Field{Name: string(name), Value: string(value)}, nil
}

// body reads what precedes the content (a known-length content's length)
// and returns the content reader.
func (d *decoder) body(known bool) (*Body, int64, error) {
	b := &Body{d: d, known: known}
	if !known {
		return b, -1, nil
	}
	l, _, atEOF, err := d.varint("content length")
	if err != nil {
		return nil, 0, err
	}
	if atEOF { // content and trailers truncated: both empty
		b.done = true
		return b, 0, nil
	}
	if d.lim.MaxContentLen >= 0 && l > uint64(d.lim.MaxContentLen) {
		return nil, 0, tooLarge("content of %d bytes, the limit is %d", l, d.lim.MaxContentLen)
	}
	if l > 1<<62 {
		return nil, 0, malformed("content length %d", l)
	}
	b.left = int64(l)
	return b, int64(l), nil
}

// Body streams the content of a message and, once the content has been
// read, reads its trailer section and checks its padding. Read returns
// io.EOF only after the whole message has been read and found valid; any
// other error means the message must be discarded. A Body belongs to one
// goroutine.
type Body struct {
	d     *decoder
	known bool
	left  int64 // bytes left in the content (known) or in the chunk (indeterminate)
	total int64 // content bytes returned
	chunk int   // index of the next indeterminate-length chunk
	done  bool  // the message has been read to its valid end
	err   error

	trailer []Field
}

// Read reads content.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := b.read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *Body) read(p []byte) (int, error) {
	for {
		if b.left > 0 {
			n, err := b.d.br.Read(p[:min(int64(len(p)), b.left)])
			b.left -= int64(n)
			b.total += int64(n)
			if n > 0 {
				return n, nil
			}
			return 0, readError(err, "content")
		}
		if b.known {
			return 0, b.finish()
		}
		l, _, atEOF, err := b.d.varint(fmt.Sprintf("length of content chunk %d", b.chunk))
		if err != nil {
			return 0, err
		}
		if atEOF {
			if b.chunk == 0 { // content and trailers truncated: both empty
				b.done = true
				return 0, io.EOF
			}
			return 0, truncated(fmt.Sprintf("content after chunk %d (no content terminator)", b.chunk-1))
		}
		if l == 0 {
			return 0, b.finish()
		}
		if max := b.d.lim.MaxContentLen; max >= 0 && (l > uint64(max) || b.total > max-int64(l)) {
			return 0, tooLarge("content exceeds %d bytes (at chunk %d)", max, b.chunk)
		}
		if l > 1<<62 {
			return 0, malformed("content chunk %d of length %d", b.chunk, l)
		}
		b.left = int64(l)
		b.chunk++
	}
}

// finish reads the trailer section and the padding after the content.
func (b *Body) finish() error {
	t, atEOF, err := b.d.fieldSection("trailer section", b.known, true)
	if err != nil {
		return err
	}
	if !atEOF {
		if err := b.d.padding(); err != nil {
			return err
		}
	}
	b.trailer = t
	b.done = true
	return io.EOF
}

// padding reads the rest of the stream, which must be zero bytes.
func (d *decoder) padding() error {
	var buf [512]byte
	off := 0
	for {
		n, err := d.br.Read(buf[:])
		for i, c := range buf[:n] {
			if c != 0 {
				return malformed("padding byte %d is 0x%02x, not zero", off+i, c)
			}
		}
		off += n
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bhttp: read padding: %w", err)
		}
	}
}

// Trailer returns the trailer section. It is nil until Read has returned
// io.EOF.
func (b *Body) Trailer() []Field { return b.trailer }

// Complete reports whether the whole message has been read and found
// valid (Read has returned io.EOF).
func (b *Body) Complete() bool { return b.done && b.err == nil }

// checkName checks a field name: a token (RFC 9110 section 5.1) in
// lowercase (RFC 9292 section 3.6 and RFC 9113 section 8.2.1). Pseudo-fields
// (":name") are not allowed in field sections.
func checkName(b []byte) error {
	if len(b) == 0 {
		return errors.New("is empty")
	}
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("has an uppercase letter at byte %d", i)
		case !isTchar(c):
			return fmt.Errorf("has byte 0x%02x at byte %d, which is not a token character", c, i)
		}
	}
	return nil
}

// checkValue checks a field value (RFC 9110 section 5.5, RFC 9113 section
// 8.2.1): no NUL, CR, LF or other control character but HTAB, and no
// leading or trailing whitespace.
func checkValue(b []byte) error {
	for i, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return fmt.Errorf("has control byte 0x%02x at byte %d", c, i)
		}
	}
	if len(b) > 0 && (isWS(b[0]) || isWS(b[len(b)-1])) {
		return errors.New("has leading or trailing whitespace")
	}
	return nil
}

func isWS(c byte) bool { return c == ' ' || c == '\t' }

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// checkControlData checks a request's control data against the rules of
// HTTP/2's pseudo-fields (RFC 9113 section 8.3.1), which RFC 9292 section
// 3.4 adopts: a token method; a scheme and a path, except for CONNECT; an
// authority without userinfo. Empty authorities are allowed (RFC 9292
// encodes an absent :authority as empty).
func checkControlData(method, scheme, authority, path string) error {
	if method == "" {
		return malformed("empty method")
	}
	for i := 0; i < len(method); i++ {
		if !isTchar(method[i]) {
			return malformed("method has byte 0x%02x at byte %d, which is not a token character", method[i], i)
		}
	}
	connect := method == "CONNECT"
	if scheme == "" && !connect {
		return malformed("empty scheme")
	}
	for i := 0; i < len(scheme); i++ {
		c := scheme[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return malformed("scheme has byte 0x%02x at byte %d", c, i)
		}
	}
	for i := 0; i < len(authority); i++ {
		c := authority[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@' || c == '\\' {
			return malformed("authority has byte 0x%02x at byte %d", c, i)
		}
	}
	if path == "" && !connect {
		return malformed("empty path")
	}
	if path != "" && path[0] != '/' && !(path == "*" && method == "OPTIONS") {
		return malformed("path does not start with '/' (and is not '*' for OPTIONS)")
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return malformed("path has byte 0x%02x at byte %d", c, i)
		}
	}
	return nil
}
