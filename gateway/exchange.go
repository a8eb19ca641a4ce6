package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Labels as byte slices, made once.
var (
	requestLabel         = []byte(RequestLabel)
	responseLabel        = []byte(ResponseLabel)
	chunkedRequestLabel  = []byte(ChunkedRequestLabel)
	chunkedResponseLabel = []byte(ChunkedResponseLabel)
	keyIDLabels          [256]string
)

func init() {
	for i := range keyIDLabels {
		keyIDLabels[i] = strconv.Itoa(i)
	}
}

// serveRequest serves a POSTed encapsulated request.
func (h *Handler) serveRequest(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	select {
	case h.sem <- struct{}{}:
	default:
		w.Header().Set("Retry-After", h.retryAfter())
		h.outerProblem(w, r, outcomeOverloaded, http.StatusServiceUnavailable, "", "overloaded",
			fmt.Sprintf("the gateway is serving its limit of %d requests; retry later", h.cfg.maxConcurrent))
		return
	}
	defer func() { <-h.sem }()
	h.cfg.metrics.inFlight.Inc()
	defer h.cfg.metrics.inFlight.Dec()
	defer func() { h.cfg.metrics.total.Observe(time.Since(start).Seconds()) }()

	if len(r.Header.Values("Expect")) > 0 {
		h.outerProblem(w, r, outcomeExpect, http.StatusExpectationFailed, "", "expectation failed",
			"the gateway does not take Expect (send the request without Expect: 100-continue)")
		return
	}
	mt, err := requestMediaType(r.Header.Get("Content-Type"))
	chunked := false
	switch {
	case err == nil && mt == RequestMediaType:
	case err == nil && mt == ChunkedRequestMediaType:
		chunked = true
	default:
		h.outerProblem(w, r, outcomeMediaType, http.StatusUnsupportedMediaType, "", "unsupported media type",
			fmt.Sprintf("the request's Content-Type must be %s or %s", RequestMediaType, ChunkedRequestMediaType))
		return
	}
	if r.ContentLength > h.cfg.maxRequestLen {
		h.tooLarge(w, r)
		return
	}
	body := http.MaxBytesReader(w, r.Body, h.cfg.maxRequestLen)
	// The one timer of the request: the inner handler's context ends at
	// the deadline, and the exchange answers it (see serve).
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.handlerTimeout)
	defer cancel()
	openError := func(err error) {
		if chunked {
			// The rest of the request stays unread: the connection
			// cannot serve another request.
			w.Header().Set("Connection", "close")
		}
		h.openError(w, r, err)
	}

	if chunked {
		// The handler reads the request as it responds.
		http.NewResponseController(w).EnableFullDuplex()
	}
	// The opener reads the request header (and finds the key by it), then
	// an unchunked request whole (into one buffer of the Content-Length,
	// when there is one) and authenticates it.
	src := &outerBody{r: body, left: r.ContentLength}
	t0 := time.Now()
	var opener *twoway.RequestOpener
	if chunked {
		opener, err = h.keys.NewRequestOpenerContext(ctx, src, chunkedRequestLabel, twoway.EnableChunking())
	} else {
		opts := []twoway.Option{twoway.WithMaxMessageLen(int(min(h.cfg.maxRequestLen, 1<<40)))}
		if r.ContentLength >= 0 {
			opts = append(opts, twoway.WithLengthHint(int(r.ContentLength)))
		}
		opener, err = h.keys.NewRequestOpenerContext(ctx, src, requestLabel, opts...)
	}
	h.cfg.metrics.decap.Observe(time.Since(t0).Seconds())
	if err != nil {
		openError(err)
		return
	}
	// The opener has read the header: the key id is its first byte.
	h.cfg.metrics.keyUse(src.keyID).Inc()
	x := &exchange{h: h, w: w, r: r, ctx: ctx, chunked: chunked, keyID: src.keyID, opener: opener, start: start}
	x.src.r = opener
	x.serve()
}

// requestMediaType returns the media type of a request's Content-Type,
// without parsing the two that OHTTP clients send.
func requestMediaType(ct string) (string, error) {
	switch ct {
	case RequestMediaType, ChunkedRequestMediaType:
		return ct, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	return mt, err
}

// outerBody is the outer body as the opener reads it, held to its
// Content-Length: an outer body that ends early is truncated (not an
// authentication failure, which would send the client to fetch the keys
// again), one that goes on past it malformed. It keeps the first byte read,
// the request header's key id, for the logs and metrics of a request the
// opener has accepted (and so whose header it has parsed).
type outerBody struct {
	r     io.Reader
	left  int64 // bytes of the Content-Length not yet read; -1 without one
	keyID byte
	read  bool // keyID is set
	err   error
}

func (b *outerBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if n > 0 && !b.read {
		b.keyID, b.read = p[0], true
	}
	if b.left >= 0 {
		if b.left -= int64(n); b.left < 0 {
			err = fmt.Errorf("%w: the request is longer than its Content-Length", twoway.ErrMalformed)
		} else if err == io.EOF && b.left > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("read the request: %w", readErr(err))
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// readErr makes a short read of the outer body a truncation.
func readErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: %w", twoway.ErrTruncated, io.ErrUnexpectedEOF)
	}
	return err
}

func (h *Handler) tooLarge(w http.ResponseWriter, r *http.Request) {
	h.outerProblem(w, r, outcomeTooLarge, http.StatusRequestEntityTooLarge, "", "request too large",
		fmt.Sprintf("the encapsulated request exceeds %d bytes", h.cfg.maxRequestLen))
}

// openError answers a request that could not be opened: an outer error
// (RFC 9458 section 5.2), with the ohttp-key problem type for key problems.
func (h *Handler) openError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	switch {
	case r.Context().Err() != nil:
		h.cfg.metrics.request(outcomeCanceled).Inc()
	case errors.As(err, &mbe), errors.Is(err, twoway.ErrMessageTooLarge):
		h.tooLarge(w, r)
	case errors.Is(err, twoway.ErrUnknownKey):
		h.outerProblem(w, r, outcomeKeyError, http.StatusBadRequest, KeyProblemType, "key identifier unknown", err.Error())
	case errors.Is(err, twoway.ErrHeaderMismatch), errors.Is(err, twoway.ErrUnsupportedSuite):
		h.outerProblem(w, r, outcomeKeyError, http.StatusBadRequest, KeyProblemType, "key configuration not supported", err.Error())
	case errors.Is(err, twoway.ErrAuthentication), errors.Is(err, kem.ErrInvalidPublicKey):
		h.outerProblem(w, r, outcomeKeyError, http.StatusBadRequest, KeyProblemType, "request cannot be decrypted",
			"the request does not decrypt with the key its key id names; fetch the key configuration again")
	case errors.Is(err, twoway.ErrTruncated), errors.Is(err, twoway.ErrMalformed),
		errors.Is(err, twoway.ErrEmptyChunk), errors.Is(err, twoway.ErrChunkTooLarge):
		h.outerProblem(w, r, outcomeMalformed, http.StatusBadRequest, "", "malformed encapsulated request", err.Error())
	default:
		// The key could not be reached (a plugin down or slow): the
		// request may be retried.
		h.cfg.logger.LogAttrs(r.Context(), slog.LevelWarn, "ohttp gateway: key unavailable", slog.String("error", err.Error()))
		w.Header().Set("Retry-After", h.retryAfter())
		h.outerProblem(w, r, outcomeKeyDown, http.StatusServiceUnavailable, "", "key unavailable",
			"the gateway cannot reach its key; retry later")
	}
}

// countingReader counts the plaintext the opener has authenticated.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// exchange is one decapsulated request and its response.
type exchange struct {
	h       *Handler
	w       http.ResponseWriter
	r       *http.Request
	ctx     context.Context
	chunked bool
	keyID   byte
	opener  *twoway.RequestOpener
	src     countingReader
	start   time.Time

	body *requestBody
	rw   *responseWriter

	// mu guards what the response writer, the timeout and finish share:
	// the response state and the outer ResponseWriter.
	mu        sync.Mutex
	committed bool // the outer response has started
	finished  bool // the response is complete (or aborted)
	timedOut  bool
	outErr    error // writing the outer response failed: the client is gone
	sealer    *twoway.ResponseSealer
	push      pushSource
	out       []byte
	status    int // the inner status encapsulated, for logs
}

// serve decodes the request, runs the inner handler and seals its response.
func (x *exchange) serve() {
	h := x.h
	lim := bhttp.Limits{MaxControlDataLen: h.cfg.maxHeaderLen, MaxFieldSectionLen: h.cfg.maxHeaderLen, MaxContentLen: h.cfg.maxRequestLen}
	breq, err := bhttp.ReadRequest(&x.src, lim)
	if err != nil {
		switch {
		case x.src.n == 0 && isOHTTPError(err):
			// Nothing authenticated: the client may not share our key,
			// so the answer cannot be encapsulated.
			if x.chunked {
				x.w.Header().Set("Connection", "close")
			}
			h.openError(x.w, x.r, err)
		case x.r.Context().Err() != nil:
			h.cfg.metrics.request(outcomeCanceled).Inc()
		default:
			x.failEarly(requestErrorStatus(err, true), err)
		}
		return
	}
	req, err := x.httpRequest(breq)
	if err != nil {
		x.failEarly(http.StatusBadRequest, err)
		return
	}
	if h.cfg.policy != nil {
		if err := h.cfg.policy(req); err != nil {
			x.problem(http.StatusForbidden, "forbidden", err.Error(), outcomeInnerError)
			return
		}
	}
	x.rw = newResponseWriter(x, req.Method == http.MethodHead)
	// The timeout answers (under x.mu) only a response that has not
	// finished, so once finish has run under x.mu, a timer that fires late
	// does nothing. A timer of its own at the context's deadline costs 2
	// allocations; context.AfterFunc on the context costs 6
	// (TestServeHTTPAllocs: 132 against 136).
	deadline, _ := x.ctx.Deadline()
	timer := time.AfterFunc(time.Until(deadline), x.onTimeout)
	defer timer.Stop()

	t0 := time.Now()
	p := x.runInner(req)
	h.cfg.metrics.origin.Observe(time.Since(t0).Seconds())
	if p == nil {
		x.body.drain()
	}
	if abort := x.finish(p); abort {
		panic(http.ErrAbortHandler)
	}
}

// isOHTTPError reports whether err comes from opening the encapsulated
// request (rather than from Binary HTTP).
func isOHTTPError(err error) bool {
	for _, e := range []error{twoway.ErrAuthentication, twoway.ErrTruncated, twoway.ErrMalformed, twoway.ErrEmptyChunk, twoway.ErrChunkTooLarge} {
		if errors.Is(err, e) {
			return true
		}
	}
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// requestErrorStatus is the encapsulated status for a request that failed
// to decode: 431 for an oversized head, 413 for oversized content, 400
// otherwise.
func requestErrorStatus(err error, head bool) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, bhttp.ErrTooLarge) && head:
		return http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, bhttp.ErrTooLarge), errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// runInner runs the inner handler and returns what it panicked with.
func (x *exchange) runInner(req *http.Request) (p any) {
	defer func() { p = recover() }()
	x.h.inner.ServeHTTP(x.rw, req)
	return nil
}

// failEarly answers a request that failed before the inner handler ran.
func (x *exchange) failEarly(status int, err error) {
	x.problem(status, http.StatusText(status), "the encapsulated request: "+err.Error(), outcomeInnerError)
}

// problem answers with an encapsulated problem details response when the
// response has not started, and reports false when it has.
func (x *exchange) problem(status int, title, detail, outcome string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.problemLocked(status, title, detail, outcome)
}

func (x *exchange) problemLocked(status int, title, detail, outcome string) bool {
	if x.committed || x.finished {
		return false
	}
	body := problemBody(status, "", title, detail)
	resp := &bhttp.Response{Framing: bhttp.KnownLengthResponse, Status: status, Header: []bhttp.Field{
		{Name: "content-type", Value: ProblemMediaType},
		{Name: "content-length", Value: strconv.Itoa(len(body))},
	}}
	if x.chunked {
		resp.Framing = bhttp.IndeterminateLengthResponse
	}
	msg, err := bhttp.AppendResponse(nil, resp, body, nil)
	if err != nil { // cannot happen: fixed fields
		panic(err)
	}
	x.status = status
	x.finished = true
	if x.chunked {
		x.w.Header().Set("Connection", "close") // the request may not have been read to its end
		x.emitLocked(msg, true, true)
	} else {
		x.writeUnchunkedLocked(msg)
	}
	x.record(outcome)
	return true
}

// record counts and logs the outcome of the exchange.
func (x *exchange) record(outcome string) {
	if x.outErr != nil && outcome == outcomeOK {
		outcome = outcomeCanceled
	}
	x.h.cfg.metrics.request(outcome).Inc()
	level := slog.LevelDebug
	if outcome != outcomeOK {
		level = slog.LevelInfo
	}
	if !x.h.cfg.logger.Enabled(x.r.Context(), level) {
		return
	}
	x.h.cfg.logger.LogAttrs(x.r.Context(), level, "ohttp gateway: request served",
		strAttr("outcome", outcome), intAttr("status", x.status), intAttr("key_id", int(x.keyID)),
		slog.Bool("chunked", x.chunked), slog.Duration("duration", time.Since(x.start)))
}

// onTimeout runs when the handler timeout expires: a response that has not
// started becomes an encapsulated 504; one that has will be aborted.
func (x *exchange) onTimeout() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.finished {
		return
	}
	x.timedOut = true
	x.rw.err = http.ErrHandlerTimeout
	x.problemLocked(http.StatusGatewayTimeout, "gateway timeout",
		fmt.Sprintf("the origin did not answer within %v", x.h.cfg.handlerTimeout), outcomeTimeout)
}

// finish ends the response after the inner handler has returned (or
// panicked with p), and reports whether the outer response must be
// aborted.
func (x *exchange) finish(p any) (abort bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.finished {
		return false // the timeout answered
	}
	fail := func(status int, title, detail, outcome string) bool {
		if x.problemLocked(status, title, detail, outcome) {
			return false
		}
		x.finished = true
		x.record(outcomeAborted)
		return true
	}
	switch {
	case p == http.ErrAbortHandler:
		x.finished = true
		x.record(outcomeAborted)
		return true
	case p != nil:
		x.h.cfg.logger.LogAttrs(x.r.Context(), slog.LevelError, "ohttp gateway: inner handler panicked", slog.String("type", fmt.Sprintf("%T", p)))
		return fail(http.StatusInternalServerError, "internal server error", "the handler failed", outcomeInnerError)
	case x.outErr != nil:
		x.finished = true
		x.record(outcomeCanceled)
		return x.committed
	case x.timedOut:
		x.finished = true
		x.record(outcomeTimeout)
		return true
	}
	if err := x.body.failure(); err != nil {
		return fail(requestErrorStatus(err, false), http.StatusText(requestErrorStatus(err, false)), "the encapsulated request: "+err.Error(), outcomeInnerError)
	}
	msg, err := x.rw.end()
	if err != nil {
		x.h.cfg.logger.LogAttrs(x.r.Context(), slog.LevelWarn, "ohttp gateway: bad response from the inner handler", slog.String("reason", errorReason(err)))
		return fail(http.StatusBadGateway, "bad gateway", "the origin's response: "+err.Error(), outcomeInnerError)
	}
	x.finished = true
	if x.chunked {
		x.emitLocked(msg, true, true)
	} else {
		x.writeUnchunkedLocked(msg)
	}
	if x.outErr != nil {
		x.record(outcomeCanceled)
		return x.committed
	}
	x.record(outcomeOK)
	return false
}

// errorReason is a category of err for logs, which never carry the text of
// errors about the plaintext.
func errorReason(err error) string {
	switch {
	case errors.Is(err, errResponseTooLarge):
		return "response too large"
	case errors.Is(err, bhttp.ErrMalformed):
		return "response not encodable"
	case errors.Is(err, http.ErrContentLength):
		return "content length mismatch"
	}
	return "other"
}

// writeUnchunkedLocked seals an unchunked Binary HTTP response and writes
// the whole outer response.
func (x *exchange) writeUnchunkedLocked(msg []byte) {
	sealer, err := x.opener.NewResponseSealer(bytes.NewReader(msg), responseLabel)
	clear(msg)
	if err != nil {
		x.h.cfg.logger.LogAttrs(x.r.Context(), slog.LevelError, "ohttp gateway: seal response", slog.String("error", err.Error()))
		x.w.WriteHeader(http.StatusInternalServerError)
		x.outErr = err
		return
	}
	n, _ := sealer.Len()
	hdr := x.w.Header()
	hdr["Content-Type"] = responseMediaTypeValue
	hdr["Content-Length"] = []string{strconv.Itoa(n)}
	hdr["Cache-Control"] = noStoreValue
	x.w.WriteHeader(http.StatusOK)
	x.committed = true
	// One Write of the sealed message, which the sealer holds whole:
	// io.Copy into the ResponseWriter would take http's ReadFrom path,
	// which flushes the header and then writes to the connection, a
	// syscall more.
	if _, err := sealer.WriteTo(x.w); err != nil {
		x.outErr = err
	}
}

// Header values the gateway sets on every response, shared: a slice whose
// capacity is its length is copied, never changed, by append.
var (
	responseMediaTypeValue = []string{ResponseMediaType}[:1:1]
	noStoreValue           = []string{"no-store"}[:1:1]
)

// pushSource is the plaintext source of a chunked response sealer: the
// exchange hands it one chunk's worth at a time, and the sealer (with
// WithChunkPerRead) seals each Read as a chunk.
type pushSource struct {
	data []byte
	eof  bool
}

func (s *pushSource) Read(p []byte) (int, error) {
	n := copy(p, s.data)
	s.data = s.data[n:]
	if len(s.data) == 0 && s.eof {
		return n, io.EOF
	}
	if n == 0 {
		return 0, errors.New("gateway: internal error: sealer read past the data")
	}
	return n, nil
}

// emitLocked seals data (at most one chunk) as the next chunk of a chunked
// response, or as its final chunk, writes it, and flushes the outer
// response when flush is set.
func (x *exchange) emitLocked(data []byte, final, flush bool) {
	if x.outErr != nil {
		return
	}
	if len(data) == 0 && !final {
		if flush && x.committed {
			x.flushOuter()
		}
		return
	}
	if !x.committed {
		hdr := x.w.Header()
		hdr.Set("Content-Type", ChunkedResponseMediaType)
		hdr.Set("Incremental", "?1")
		hdr.Set("Cache-Control", "no-store")
		x.w.WriteHeader(http.StatusOK)
		x.committed = true
	}
	if x.sealer == nil {
		s, err := x.opener.NewResponseSealer(&x.push, chunkedResponseLabel,
			twoway.EnableChunking(), twoway.WithChunkPerRead(), twoway.WithMaxChunkPlaintextLen(x.h.cfg.respChunkLen))
		if err != nil {
			x.outErr = err
			return
		}
		maxChunk, _ := s.MaxCiphertextChunkLen()
		x.sealer, x.out = s, make([]byte, s.HeaderLen()+maxChunk)
	}
	x.push.data, x.push.eof = data, final
	for len(x.push.data) > 0 || final {
		n, err := x.sealer.Read(x.out)
		if n > 0 {
			if _, werr := x.w.Write(x.out[:n]); werr != nil {
				x.outErr = werr
				break
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			x.outErr = err
			break
		}
	}
	clear(data)
	if flush && x.outErr == nil {
		x.flushOuter()
	}
}

func (x *exchange) flushOuter() {
	if err := http.NewResponseController(x.w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		x.outErr = err
	}
}

// httpRequest makes the inner handler's request from a Binary HTTP one.
func (x *exchange) httpRequest(b *bhttp.Request) (*http.Request, error) {
	if b.Method == http.MethodConnect {
		return nil, errors.New("CONNECT is not served through the gateway")
	}
	var u *url.URL
	if b.Path == "*" {
		u = &url.URL{Path: "*"}
	} else {
		var err error
		if u, err = url.ParseRequestURI(b.Path); err != nil {
			return nil, errors.New("the path is not a valid request target")
		}
	}
	hdr := make(http.Header, len(b.Header))
	for i, f := range b.Header {
		switch f.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, fmt.Errorf("header field line %d is %s, a connection-specific field", i, f.Name)
		case "te":
			if !strings.EqualFold(f.Value, "trailers") {
				return nil, fmt.Errorf("header field line %d is te with a value other than \"trailers\"", i)
			}
		}
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		hdr[k] = append(hdr[k], f.Value)
	}
	host := b.Authority
	if hs := hdr["Host"]; len(hs) > 0 {
		if len(hs) > 1 || (host != "" && hs[0] != host) {
			return nil, errors.New("the Host header field disagrees with the authority")
		}
		host = hs[0]
		delete(hdr, "Host")
	}
	u.Scheme, u.Host = strings.ToLower(b.Scheme), host
	clen := b.ContentLength
	declared := int64(-1)
	if cls := hdr["Content-Length"]; len(cls) > 0 {
		v, err := strconv.ParseInt(cls[0], 10, 64)
		if len(cls) > 1 || err != nil || v < 0 || (clen >= 0 && v != clen) {
			return nil, errors.New("the Content-Length header field is invalid or disagrees with the content")
		}
		declared, clen = v, v
	}
	trailer := make(http.Header) // filled in at the end of the body
	for _, v := range hdr["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				trailer[textproto.CanonicalMIMEHeaderKey(k)] = nil
			}
		}
	}
	x.body = &requestBody{x: x, b: b.Body, declared: declared, trailer: trailer}
	var body io.ReadCloser = x.body
	req := &http.Request{
		Method:        b.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          body,
		ContentLength: clen,
		Host:          host,
		Trailer:       trailer,
		RequestURI:    b.Path,
	}
	return req.WithContext(x.ctx), nil
}

// requestBody is the inner request's body: the Binary HTTP content,
// checked against its Content-Length, with the trailers filled in at its
// end. A failure is kept: the exchange then fails or aborts, whatever the
// inner handler does with it.
type requestBody struct {
	x        *exchange
	b        *bhttp.Body
	declared int64 // the Content-Length header field, or -1
	trailer  http.Header

	mu     sync.Mutex
	n      int64
	closed bool
	err    error
}

var errBodyLength = errors.New("the content is not as long as its Content-Length header field says")

func (rb *requestBody) Read(p []byte) (int, error) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return rb.readLocked(p)
}

func (rb *requestBody) readLocked(p []byte) (int, error) {
	if rb.err != nil {
		return 0, rb.err
	}
	n, err := rb.b.Read(p)
	rb.n += int64(n)
	if rb.declared >= 0 && rb.n > rb.declared {
		err = errBodyLength
	}
	if err == io.EOF {
		if rb.declared >= 0 && rb.n != rb.declared {
			err = errBodyLength
		} else if err2 := rb.setTrailer(); err2 != nil {
			err = err2
		}
	}
	if err != nil {
		rb.err = err
	}
	return n, err
}

// setTrailer copies the trailer section into the request's Trailer.
func (rb *requestBody) setTrailer() error {
	for i, f := range rb.b.Trailer() {
		switch f.Name {
		case "content-length", "transfer-encoding", "host", "trailer", "content-type", "authorization",
			"connection", "keep-alive", "proxy-connection", "upgrade", "te":
			return fmt.Errorf("trailer field line %d is %s, which is not allowed in trailers", i, f.Name)
		}
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		rb.trailer[k] = append(rb.trailer[k], f.Value)
	}
	return nil
}

// Close marks the body closed; the exchange still reads what is left (see
// drain).
func (rb *requestBody) Close() error {
	rb.mu.Lock()
	rb.closed = true
	rb.mu.Unlock()
	return nil
}

// drain reads what the inner handler left of the request, so that a
// response is only completed for a request that was complete and valid.
func (rb *requestBody) drain() {
	if rb == nil {
		return
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.err != nil {
		return // read to its end (or failed) already: the common case
	}
	buf := drainBufs.Get().(*[]byte)
	defer drainBufs.Put(buf)
	for rb.err == nil {
		if _, err := rb.readLocked(*buf); err != nil {
			break
		}
	}
}

// drainBufs are the buffers drain reads into (plaintext the inner handler
// left unread; drain zeroes nothing, but the buffers only ever hold content
// the handler could have read itself, and are reused only here).
var drainBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// failure returns the request body's error, if it failed (io.EOF, the
// body's valid end, is not a failure).
func (rb *requestBody) failure() error {
	if rb == nil {
		return nil
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.err == io.EOF {
		return nil
	}
	return rb.err
}
