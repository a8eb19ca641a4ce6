package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

var testSuite = twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}

// newKeys returns a twoway.Gateway with one fresh X25519 soft key, id 1.
func newKeys(t testing.TB) *twoway.Gateway {
	t.Helper()
	k, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	if err != nil {
		t.Fatal(err)
	}
	g := twoway.NewGateway(nil)
	if err := g.AddKey(1, k, testSuite); err != nil {
		t.Fatal(err)
	}
	return g
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// start serves a gateway around inner on a loopback server.
func start(t testing.TB, inner http.Handler, opts ...gateway.Option) (*httptest.Server, *twoway.Gateway, *gateway.Handler) {
	t.Helper()
	keys := newKeys(t)
	h, err := gateway.New(keys, inner, append([]gateway.Option{gateway.WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, keys, h
}

// client is an OHTTP client for the tests, independent of the gateway's
// code but for the Binary HTTP codec.
type client struct {
	url    string
	sender *twoway.RequestSender
	hc     *http.Client
}

// newClient fetches the key configuration and makes a sender for its first
// key.
func newClient(t testing.TB, srv *httptest.Server) *client {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + gateway.DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != gateway.KeyConfigMediaType {
		t.Fatalf("key configuration: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	cfgs, err := twoway.ParseKeyConfigs(body)
	if err != nil {
		t.Fatal(err)
	}
	return &client{url: srv.URL + gateway.DefaultPath, sender: senderFor(t, cfgs[0]), hc: srv.Client()}
}

func senderFor(t testing.TB, c twoway.KeyConfig) *twoway.RequestSender {
	t.Helper()
	pub, err := c.KEM.Scheme().UnmarshalBinaryPublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := twoway.NewRequestSender(hpke.NewSuite(c.KEM, c.Suites[0].KDF, c.Suites[0].AEAD), c.KeyID, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// exchange is one sent request.
type exchange struct {
	outer  *http.Response
	sealer *twoway.RequestSealer
}

// send seals the Binary HTTP request read from plain and posts it; chunked
// streams it.
func (c *client) send(ctx context.Context, plain io.Reader, chunked bool) (*exchange, error) {
	var opts []twoway.Option
	label, mt := gateway.RequestLabel, gateway.RequestMediaType
	if chunked {
		opts = []twoway.Option{twoway.EnableChunking(), twoway.WithChunkPerRead()}
		label, mt = gateway.ChunkedRequestLabel, gateway.ChunkedRequestMediaType
	}
	sealer, err := c.sender.NewRequestSealer(plain, []byte(label), opts...)
	if err != nil {
		return nil, err
	}
	var body io.Reader = sealer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, body)
	if err != nil {
		return nil, err
	}
	if n, ok := sealer.Len(); ok {
		req.ContentLength = int64(n)
	} else {
		req.ContentLength = -1
	}
	req.Header.Set("Content-Type", mt)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	return &exchange{outer: resp, sealer: sealer}, nil
}

// open opens the encapsulated response.
func (e *exchange) open() (*bhttp.Response, error) {
	var opts []twoway.Option
	label := gateway.ResponseLabel
	switch e.outer.Header.Get("Content-Type") {
	case gateway.ChunkedResponseMediaType:
		opts = []twoway.Option{twoway.EnableChunking()}
		label = gateway.ChunkedResponseLabel
	case gateway.ResponseMediaType:
	default:
		return nil, &outerError{e.outer.StatusCode, e.outer.Header.Get("Content-Type")}
	}
	o, err := e.sealer.NewResponseOpener(e.outer.Body, []byte(label), opts...)
	if err != nil {
		return nil, err
	}
	return bhttp.ReadResponse(o, bhttp.Limits{MaxFieldSectionLen: 1 << 20})
}

type outerError struct {
	status int
	ct     string
}

func (e *outerError) Error() string {
	return "outer response " + http.StatusText(e.status) + " " + e.ct
}

// encodeRequest encodes a Binary HTTP request.
func encodeRequest(t testing.TB, f bhttp.Framing, method, path string, header []bhttp.Field, content []byte, trailer []bhttp.Field) []byte {
	t.Helper()
	b, err := bhttp.AppendRequest(nil, &bhttp.Request{Framing: f, Method: method, Scheme: "https", Authority: "origin.example", Path: path, Header: header}, content, trailer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip sends a whole request and returns the inner response and its
// content.
func (c *client) roundTrip(t testing.TB, msg []byte, chunked bool) (*http.Response, *bhttp.Response, []byte) {
	t.Helper()
	x, err := c.send(context.Background(), bytes.NewReader(msg), chunked)
	if err != nil {
		t.Fatal(err)
	}
	defer x.outer.Body.Close()
	resp, err := x.open()
	if err != nil {
		t.Fatalf("open the response (outer %s): %v", x.outer.Status, err)
	}
	content, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the response: %v", err)
	}
	return x.outer, resp, content
}

// field returns the first value of name in fields.
func field(fields []bhttp.Field, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// problemOf decodes a problem details body.
func problemOf(t testing.TB, b []byte) gateway.Problem {
	t.Helper()
	var p gateway.Problem
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("problem details %q: %v", b, err)
	}
	return p
}

// echo is the origin of the tests: it answers with the request's method,
// path, headers it was asked about, and its body.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Url", r.URL.String())
	w.Header().Set("X-Remote-Addr", r.RemoteAddr)
	if v := r.Trailer.Get("X-Checksum"); v != "" {
		w.Header().Set("X-Got-Trailer", v)
	}
	w.Write(body)
})
