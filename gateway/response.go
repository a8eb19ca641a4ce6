package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
)

var errResponseTooLarge = errors.New("the response exceeds the gateway's bound")

// responseWriter is the inner handler's http.ResponseWriter. It encodes the
// response as an indeterminate-length Binary HTTP message as it is
// written: for a chunked exchange it seals a chunk whenever one fills and
// at each Flush; for an unchunked one it keeps the message, bounded, until
// the handler returns.
//
// It implements http.Flusher, and FlushError for http.ResponseController.
// It does not implement Hijack or Unwrap: nothing reaches the outer
// connection.
type responseWriter struct {
	x      *exchange
	header http.Header
	head   bool // the request is HEAD: content is counted, not sent

	status int // the final status, once written
	// The header as it was at the final WriteHeader: its fields (without
	// a sniffed Content-Type), their Content-Length or -1, or why they
	// cannot be encoded; whether to sniff the Content-Type; and the
	// trailer fields it declared.
	fields      []bhttp.Field
	fieldsClen  int64
	fieldsErr   error
	sniff       bool
	declared    []string
	bodyAllowed bool
	headDone    bool // the final head is in buf
	buf         []byte
	written     int64
	clen        int64 // the Content-Length the handler set, or -1
	err         error // sticky: every later write fails with it
}

func newResponseWriter(x *exchange, head bool) *responseWriter {
	capacity := 512
	if x.chunked {
		capacity = x.h.cfg.respChunkLen
	}
	buf := bhttp.AppendFramingIndicator(make([]byte, 0, capacity), bhttp.IndeterminateLengthResponse)
	return &responseWriter{x: x, header: make(http.Header), head: head, clen: -1, buf: buf}
}

// Header returns the response header map.
func (rw *responseWriter) Header() http.Header { return rw.header }

// WriteHeader sends an informational response (1xx but 101, sent at once
// when chunked) or sets the final status.
func (rw *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	rw.x.mu.Lock()
	defer rw.x.mu.Unlock()
	rw.writeHeaderLocked(code)
}

func (rw *responseWriter) writeHeaderLocked(code int) {
	if rw.err != nil {
		return
	}
	if rw.status != 0 {
		rw.x.h.cfg.logger.LogAttrs(rw.x.r.Context(), slog.LevelDebug, "ohttp gateway: superfluous WriteHeader", intAttr("status", code))
		return
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			return
		}
		fields, _, err := headFields(rw.header)
		if err == nil {
			rw.buf, err = bhttp.AppendInformational(rw.buf, code, fields)
		}
		if err != nil {
			rw.err = err
			return
		}
		if rw.x.chunked {
			rw.x.emitLocked(rw.buf, false, true)
			rw.buf = rw.buf[:0]
			rw.err = rw.x.outErr
		}
		return
	}
	rw.status = code
	rw.bodyAllowed = code != http.StatusNoContent && code != http.StatusNotModified
	// The head is what the header map holds now (later changes are
	// trailers, or ignored, as with net/http): its fields are copied now,
	// the map itself is not.
	rw.fields, rw.fieldsClen, rw.fieldsErr = headFields(rw.header)
	_, hasType := rw.header["Content-Type"]
	rw.sniff = rw.bodyAllowed && !hasType
	if d := rw.header["Trailer"]; len(d) > 0 {
		rw.declared = slices.Clone(d)
	}
}

// ensureHeadLocked encodes the final head, sniffing the content type from
// the first content when the handler set none (as net/http does).
func (rw *responseWriter) ensureHeadLocked(sniff []byte) error {
	if rw.headDone {
		return nil
	}
	if rw.status > 599 {
		return fmt.Errorf("%w: status %d cannot be encoded in Binary HTTP", bhttp.ErrMalformed, rw.status)
	}
	if rw.fieldsErr != nil {
		return rw.fieldsErr
	}
	fields := rw.fields
	if rw.sniff && len(sniff) > 0 {
		fields = append(fields, bhttp.Field{Name: "content-type", Value: http.DetectContentType(sniff)})
	}
	var err error
	if rw.buf, err = bhttp.AppendFinalHead(rw.buf, rw.status, fields); err != nil {
		return err
	}
	rw.clen, rw.headDone = rw.fieldsClen, true
	rw.x.status = rw.status
	return nil
}

// Write writes content.
func (rw *responseWriter) Write(p []byte) (int, error) {
	x := rw.x
	x.mu.Lock()
	defer x.mu.Unlock()
	if rw.err != nil {
		return 0, rw.err
	}
	if rw.status == 0 {
		rw.writeHeaderLocked(http.StatusOK)
	}
	if !rw.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	if err := rw.ensureHeadLocked(p); err != nil {
		rw.err = err
		return 0, err
	}
	if rw.clen >= 0 && rw.written+int64(len(p)) > rw.clen {
		rw.err = http.ErrContentLength
		return 0, rw.err
	}
	rw.written += int64(len(p))
	if rw.head || len(p) == 0 {
		return len(p), nil
	}
	if !x.chunked {
		if rw.written > x.h.cfg.maxResponseLen {
			rw.err = fmt.Errorf("%w of %d bytes", errResponseTooLarge, x.h.cfg.maxResponseLen)
			return 0, rw.err
		}
		rw.buf = bhttp.AppendChunk(rw.buf, p)
		return len(p), nil
	}
	maxPT := x.h.cfg.respChunkLen
	n := len(p)
	for len(p) > 0 {
		if maxPT-len(rw.buf) < 64 {
			x.emitLocked(rw.buf, false, false)
			rw.buf = rw.buf[:0]
			if x.outErr != nil {
				rw.err = x.outErr
				return 0, rw.err
			}
		}
		m := min(len(p), maxPT-len(rw.buf)-4) // 4: the longest chunk length prefix
		rw.buf = bhttp.AppendChunkHeader(rw.buf, m)
		rw.buf = append(rw.buf, p[:m]...)
		p = p[m:]
	}
	return n, nil
}

// Flush sends what has been written as a sealed chunk at once (chunked
// exchanges; unchunked responses are sent whole when the handler returns).
func (rw *responseWriter) Flush() { rw.FlushError() }

// FlushError is Flush that reports a failure, for http.ResponseController.
func (rw *responseWriter) FlushError() error {
	x := rw.x
	x.mu.Lock()
	defer x.mu.Unlock()
	if rw.err != nil {
		return rw.err
	}
	if rw.status == 0 {
		rw.writeHeaderLocked(http.StatusOK)
	}
	if !x.chunked {
		return nil
	}
	if err := rw.ensureHeadLocked(nil); err != nil {
		rw.err = err
		return err
	}
	x.emitLocked(rw.buf, false, true)
	rw.buf = rw.buf[:0]
	if x.outErr != nil {
		rw.err = x.outErr
	}
	return rw.err
}

// end completes the Binary HTTP message: the head if no content was
// written, the content terminator and the trailers.
func (rw *responseWriter) end() ([]byte, error) {
	if rw.err != nil {
		return nil, rw.err
	}
	if rw.status == 0 {
		rw.writeHeaderLocked(http.StatusOK)
	}
	if err := rw.ensureHeadLocked(nil); err != nil {
		return nil, err
	}
	if rw.clen >= 0 && rw.bodyAllowed && rw.written != rw.clen {
		return nil, fmt.Errorf("%w: the handler wrote %d bytes of a Content-Length of %d", http.ErrContentLength, rw.written, rw.clen)
	}
	return bhttp.AppendEnd(rw.buf, trailerFields(rw.header, rw.declared))
}

// hopByHop are the fields that never travel in Binary HTTP.
func hopByHop(lower string) bool {
	switch lower {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te":
		return true
	}
	return false
}

// headFields returns a header map's fields in name order, without
// connection-specific fields and trailers, and the Content-Length it sets
// (-1 if none). A missing Content-Type is not sniffed here (see
// ensureHeadLocked), but room is left for it.
func headFields(h http.Header) ([]bhttp.Field, int64, error) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	clen := int64(-1)
	fields := make([]bhttp.Field, 0, len(keys)+1)
	for _, k := range keys {
		lk := lowerName(k)
		if hopByHop(lk) || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		vs := h[k]
		if lk == "content-length" {
			if len(vs) != 1 {
				return nil, 0, fmt.Errorf("%w: %d Content-Length values", bhttp.ErrMalformed, len(vs))
			}
			v, err := strconv.ParseInt(vs[0], 10, 64)
			if err != nil || v < 0 {
				return nil, 0, fmt.Errorf("%w: Content-Length is not a length", bhttp.ErrMalformed)
			}
			clen = v
		}
		for _, v := range vs {
			fields = append(fields, bhttp.Field{Name: lk, Value: v})
		}
	}
	return fields, clen, nil
}

// commonNames maps the canonical form of common response header names to
// their lowercase form, so that encoding them allocates nothing.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"Accept-Ranges", "Access-Control-Allow-Origin", "Age", "Cache-Control", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Range", "Content-Security-Policy", "Content-Type",
		"Date", "Etag", "Expires", "Last-Modified", "Link", "Location", "Retry-After", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Trailer", "Vary", "Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options"} {
		m[n] = strings.ToLower(n)
	}
	return m
}()

// lowerName returns a header name in lowercase.
func lowerName(k string) string {
	if l, ok := commonNames[k]; ok {
		return l
	}
	return strings.ToLower(k)
}

// trailerFields returns the trailers: the fields the Trailer header of the
// head declared, and those set with http.TrailerPrefix.
func trailerFields(live http.Header, declared []string) []bhttp.Field {
	var fields []bhttp.Field
	for _, v := range declared {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			for _, val := range live[k] {
				fields = append(fields, bhttp.Field{Name: strings.ToLower(k), Value: val})
			}
		}
	}
	keys := make([]string, 0)
	for k := range live {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := strings.ToLower(strings.TrimPrefix(k, http.TrailerPrefix))
		for _, val := range live[k] {
			fields = append(fields, bhttp.Field{Name: name, Value: val})
		}
	}
	return fields
}

func strAttr(k, v string) slog.Attr     { return slog.String(k, v) }
func intAttr(k string, v int) slog.Attr { return slog.Int(k, v) }

func levelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
