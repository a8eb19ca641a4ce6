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
// sent as it is read, and the response body streams chunk by chunk. An
// outer error of the gateway is an *OuterError; RFC 9458's key problem
// (the configuration is stale, or the request reached the wrong gateway)
// matches ErrKeyProblem.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// ErrKeyProblem is matched by an *OuterError of RFC 9458's key problem
// type: fetch the key configuration again.
var ErrKeyProblem = errors.New("client: the gateway does not accept this key configuration")

// MaxKeyConfigLen bounds a fetched key configuration.
const MaxKeyConfigLen = 64 << 10

// OuterError is a gateway's (or relay's) answer other than an
// encapsulated response: its status and, when it sent one, its problem
// details (RFC 9457).
type OuterError struct {
	Status int
	Type   string
	Title  string
	Detail string
}

func (e *OuterError) Error() string {
	s := fmt.Sprintf("client: the gateway answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Title != "" {
		s += ": " + e.Title
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is matches ErrKeyProblem for the key problem type.
func (e *OuterError) Is(target error) bool {
	return target == ErrKeyProblem && e.Type == gateway.KeyProblemType
}

// FetchKeyConfigs GETs a gateway's key configurations
// (application/ohttp-keys).
func FetchKeyConfigs(ctx context.Context, hc *http.Client, url string) ([]twoway.KeyConfig, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", gateway.KeyConfigMediaType)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: fetch the key configuration: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, outerError(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != gateway.KeyConfigMediaType {
		return nil, fmt.Errorf("client: the key configuration came as %q, not %s", resp.Header.Get("Content-Type"), gateway.KeyConfigMediaType)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxKeyConfigLen+1))
	if err != nil {
		return nil, fmt.Errorf("client: read the key configuration: %w", err)
	}
	if len(b) > MaxKeyConfigLen {
		return nil, fmt.Errorf("client: the key configuration is larger than %d bytes", MaxKeyConfigLen)
	}
	return twoway.ParseKeyConfigs(b)
}

// FetchKeyConfig returns the first key configuration of a gateway that
// this client can use.
func FetchKeyConfig(ctx context.Context, hc *http.Client, url string) (twoway.KeyConfig, error) {
	kcs, err := FetchKeyConfigs(ctx, hc, url)
	if err != nil {
		return twoway.KeyConfig{}, err
	}
	for _, kc := range kcs {
		if kc.KEM.IsValid() && len(kc.Suites) > 0 {
			return kc, nil
		}
	}
	return twoway.KeyConfig{}, errors.New("client: the gateway publishes no key configuration this client can use")
}

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

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer func() {
			if req.Body != nil {
				req.Body.Close()
			}
		}()
	}
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
	label, mediaType, respLabel, respType := gateway.RequestLabel, gateway.RequestMediaType, gateway.ResponseLabel, gateway.ResponseMediaType
	var opts, respOpts []twoway.Option
	if chunked {
		label, mediaType, respLabel, respType = gateway.ChunkedRequestLabel, gateway.ChunkedRequestMediaType, gateway.ChunkedResponseLabel, gateway.ChunkedResponseMediaType
		opts = []twoway.Option{twoway.EnableChunking(), twoway.WithChunkPerRead()}
		respOpts = []twoway.Option{twoway.EnableChunking()}
		inner.Framing = bhttp.IndeterminateLengthRequest
		head, err := bhttp.AppendRequestHead(nil, inner)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		var body io.Reader = http.NoBody
		if req.Body != nil {
			body = req.Body
		}
		msg = &streamedRequest{head: head, body: body}
	} else {
		var content []byte
		if req.Body != nil {
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
	sealer, err := sender.NewRequestSealer(msg, []byte(label), opts...)
	if err != nil {
		return nil, fmt.Errorf("client: seal the request: %w", err)
	}
	outer, err := http.NewRequestWithContext(req.Context(), http.MethodPost, t.URL, sealer)
	if err != nil {
		return nil, err
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
		return nil, outerError(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != respType {
		resp.Body.Close()
		return nil, fmt.Errorf("client: the gateway answered 200 with %q, not %s", resp.Header.Get("Content-Type"), respType)
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
	out := &http.Response{
		Status: fmt.Sprintf("%d %s", ir.Status, http.StatusText(ir.Status)), StatusCode: ir.Status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, ContentLength: ir.ContentLength, Request: req,
		Body: &responseBody{body: ir.Body, outer: resp.Body},
	}
	for _, f := range ir.Header {
		out.Header.Add(f.Name, f.Value)
	}
	return out, nil
}

// streamedRequest is an indeterminate-length Binary HTTP request read as
// its body is: the head, then a chunk per read of the body, then the end.
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

// responseBody reads the inner content and closes the outer body.
type responseBody struct {
	body  *bhttp.Body
	outer io.Closer
}

func (b *responseBody) Read(p []byte) (int, error) { return b.body.Read(p) }
func (b *responseBody) Close() error               { return b.outer.Close() }

// outerError reads an outer error response.
func outerError(resp *http.Response) error {
	e := &OuterError{Status: resp.StatusCode}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == gateway.ProblemMediaType {
		var p gateway.Problem
		if json.NewDecoder(io.LimitReader(resp.Body, 16<<10)).Decode(&p) == nil {
			e.Type, e.Title, e.Detail = p.Type, p.Title, p.Detail
		}
	}
	return e
}
