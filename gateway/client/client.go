// Package client is an Oblivious HTTP client (RFC 9458, and Chunked
// OHTTP): an http.RoundTripper that encodes each request as Binary HTTP,
// seals it to a gateway's key configuration, POSTs it to the gateway (or
// to a relay that forwards to it), and opens the response.
//
//	kc, err := client.FetchKeyConfig(ctx, http.DefaultClient, gatewayURL) // or a pinned configuration
//	c := &http.Client{Transport: &client.Transport{URL: gatewayURL, Config: kc}}
//	resp, err := c.Get("https://origin.example/")
//
// A request whose body length is unknown (ContentLength -1 with a body),
// or any request when Chunked is set, goes as Chunked OHTTP: its body is
// sent as it is read, and the response body streams chunk by chunk; the
// inner response's trailer fields fill the response's Trailer at the end
// of its body, and its informational (1xx) responses reach the request
// context's httptrace.ClientTrace Got1xxResponse. An outer error of the
// gateway is an *OuterError; RFC 9458's key problem (the configuration is
// stale, or the request reached the wrong gateway) matches ErrKeyProblem.
//
// Exchange is the same exchange for a Binary HTTP message the caller
// encodes itself (twoway-hsm request uses it).
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Transport is an http.RoundTripper that sends each request through an
// OHTTP gateway. It is safe for concurrent use.
type Transport struct {
	// URL is where the encapsulated requests are POSTed: the gateway's
	// (its /.well-known/ohttp-gateway) or a relay's.
	URL string
	// Config is the gateway key to seal to; its first suite is used.
	Config twoway.KeyConfig
	// HTTP sends the outer requests; nil means http.DefaultClient.
	HTTP *http.Client
	// Chunked sends every request as Chunked OHTTP.
	Chunked bool
	// Limits bound the decoded response (bhttp's defaults when zero).
	Limits bhttp.Limits
}

// Response is the inner response of an Exchange: the decoded Binary HTTP
// response, whose Body streams from the outer response's body. Close it
// when done.
type Response struct {
	*bhttp.Response
	outer io.Closer
}

// Close closes the outer response's body.
func (r *Response) Close() error { return r.outer.Close() }

// Exchange sends one Binary HTTP request through the gateway: msg is the
// encoded message (RFC 9292), a known-length one, or when chunked an
// indeterminate-length one (see StreamRequest) sealed a chunk per Read. It
// returns the inner response once its head has arrived. An answer other
// than 200 is an *OuterError, a 200 of another media type a
// *MediaTypeError; a response that does not open wraps
// twoway.ErrAuthentication, one that ends early twoway.ErrTruncated or
// bhttp.ErrTruncated.
func (t *Transport) Exchange(ctx context.Context, msg io.Reader, chunked bool) (*Response, error) {
	kc := t.Config
	if len(kc.Suites) == 0 {
		return nil, errors.New("client: the key configuration has no suites")
	}
	pub, err := kc.KEM.Scheme().UnmarshalBinaryPublicKey(kc.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("client: key %d: %w", kc.KeyID, err)
	}
	suite := kc.Suites[0]
	sender, err := twoway.NewRequestSender(hpke.NewSuite(kc.KEM, suite.KDF, suite.AEAD), kc.KeyID, pub, nil)
	if err != nil {
		return nil, fmt.Errorf("client: key %d: %w", kc.KeyID, err)
	}
	label, mediaType, respLabel, respType := gateway.RequestLabel, gateway.RequestMediaType, gateway.ResponseLabel, gateway.ResponseMediaType
	var opts, respOpts []twoway.Option
	if chunked {
		label, mediaType, respLabel, respType = gateway.ChunkedRequestLabel, gateway.ChunkedRequestMediaType, gateway.ChunkedResponseLabel, gateway.ChunkedResponseMediaType
		opts = []twoway.Option{twoway.EnableChunking(), twoway.WithChunkPerRead()}
		respOpts = []twoway.Option{twoway.EnableChunking()}
	}
	sealer, err := sender.NewRequestSealer(msg, []byte(label), opts...)
	if err != nil {
		return nil, fmt.Errorf("client: seal the request: %w", err)
	}
	outer, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, sealer)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	outer.ContentLength = -1
	if n, ok := sealer.Len(); ok {
		outer.ContentLength = int64(n)
	}
	outer.Header.Set("Content-Type", mediaType)
	hc := t.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(outer)
	if err != nil {
		return nil, fmt.Errorf("client: send the request: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readOuterError(resp)
	}
	if err := checkMediaType(resp, t.URL, respType); err != nil {
		resp.Body.Close()
		return nil, err
	}
	opener, err := sealer.NewResponseOpener(resp.Body, []byte(respLabel), respOpts...)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("client: open the response: %w", err)
	}
	ir, err := bhttp.ReadResponse(opener, t.Limits)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("client: the response: %w", err)
	}
	return &Response{Response: ir, outer: resp.Body}, nil
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer func() {
			if req.Body != nil {
				req.Body.Close()
			}
		}()
	}
	chunked := t.Chunked || (req.Body != nil && req.Body != http.NoBody && req.ContentLength < 0)
	inner := &bhttp.Request{Method: req.Method, Scheme: req.URL.Scheme, Authority: req.URL.Host, Path: req.URL.RequestURI()}
	if req.Host != "" {
		inner.Authority = req.Host
	}
	for name, vs := range req.Header {
		for _, v := range vs {
			inner.Header = append(inner.Header, bhttp.Field{Name: strings.ToLower(name), Value: v})
		}
	}
	var msg io.Reader
	if chunked {
		inner.Framing = bhttp.IndeterminateLengthRequest
		head, err := bhttp.AppendRequestHead(nil, inner)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		var body io.Reader
		if req.Body != nil && req.Body != http.NoBody {
			body = req.Body
		}
		msg = StreamRequest(head, body)
	} else {
		var content []byte
		if req.Body != nil {
			var err error
			if content, err = io.ReadAll(req.Body); err != nil {
				return nil, fmt.Errorf("client: read the request body: %w", err)
			}
		}
		inner.Framing = bhttp.KnownLengthRequest
		b, err := bhttp.AppendRequest(nil, inner, content, nil)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		msg = bytes.NewReader(b)
	}
	ir, err := t.Exchange(req.Context(), msg, chunked)
	if err != nil {
		return nil, err
	}
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
		for _, i := range ir.Informational {
			if err := trace.Got1xxResponse(i.Status, mimeHeader(i.Header)); err != nil {
				ir.Close()
				return nil, err
			}
		}
	}
	out := &http.Response{
		Status: fmt.Sprintf("%d %s", ir.Status, http.StatusText(ir.Status)), StatusCode: ir.Status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header(mimeHeader(ir.Header)), ContentLength: ir.ContentLength, Request: req,
	}
	out.Body = &responseBody{inner: ir, resp: out}
	return out, nil
}

// mimeHeader is fields as a header map.
func mimeHeader(fields []bhttp.Field) textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	for _, f := range fields {
		h.Add(f.Name, f.Value)
	}
	return h
}

// responseBody reads the inner content, fills the response's Trailer at
// its end, and closes the outer body.
type responseBody struct {
	inner *Response
	resp  *http.Response
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.inner.Body.Read(p)
	if err == io.EOF && b.resp.Trailer == nil {
		if tr := b.inner.Body.Trailer(); len(tr) > 0 {
			b.resp.Trailer = http.Header(mimeHeader(tr))
		}
	}
	return n, err
}

func (b *responseBody) Close() error { return b.inner.Close() }
