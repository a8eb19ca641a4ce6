package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

func TestRoundTrip(t *testing.T) {
	srv, _, _ := start(t, echo)
	c := newClient(t, srv)
	content := bytes.Repeat([]byte("0123456789"), 5000) // several chunks
	for _, chunked := range []bool{false, true} {
		for _, f := range []bhttp.Framing{bhttp.KnownLengthRequest, bhttp.IndeterminateLengthRequest} {
			msg := encodeRequest(t, f, "POST", "/p?q=1", []bhttp.Field{{Name: "trailer", Value: "x-checksum"}}, content,
				[]bhttp.Field{{Name: "x-checksum", Value: "abc"}})
			outer, resp, got := c.roundTrip(t, msg, chunked)
			wantCT := gateway.ResponseMediaType
			if chunked {
				wantCT = gateway.ChunkedResponseMediaType
				if outer.Header.Get("Incremental") != "?1" {
					t.Errorf("chunked %v: Incremental %q", f, outer.Header.Get("Incremental"))
				}
			}
			if outer.StatusCode != 200 || outer.Header.Get("Content-Type") != wantCT {
				t.Errorf("chunked=%v %v: outer %s %q", chunked, f, outer.Status, outer.Header.Get("Content-Type"))
			}
			if resp.Status != 200 || !bytes.Equal(got, content) {
				t.Errorf("chunked=%v %v: status %d, %d bytes", chunked, f, resp.Status, len(got))
			}
			for name, want := range map[string]string{"x-method": "POST", "x-host": "origin.example",
				"x-url": "https://origin.example/p?q=1", "x-remote-addr": "", "x-got-trailer": "abc",
				"content-type": "application/octet-stream"} {
				if v := field(resp.Header, name); v != want {
					t.Errorf("chunked=%v %v: %s = %q, want %q", chunked, f, name, v, want)
				}
			}
		}
	}
}

// TestResponseFeatures checks informational responses, trailers, status
// codes and content-type sniffing through the gateway.
func TestResponseFeatures(t *testing.T) {
	srv, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "<html><body>hi</body></html>")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	}))
	c := newClient(t, srv)
	for _, chunked := range []bool{false, true} {
		_, resp, content := c.roundTrip(t, encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", nil, nil, nil), chunked)
		if len(resp.Informational) != 1 || resp.Informational[0].Status != 103 || field(resp.Informational[0].Header, "link") == "" {
			t.Errorf("informational %+v", resp.Informational)
		}
		if resp.Status != 201 || string(content) != "<html><body>hi</body></html>" || !strings.HasPrefix(field(resp.Header, "content-type"), "text/html") {
			t.Errorf("status %d content %q header %q", resp.Status, content, resp.Header)
		}
		tr := resp.Body.Trailer()
		if field(tr, "x-sum") != "42" || field(tr, "x-late") != "yes" {
			t.Errorf("trailer %q", tr)
		}
	}
}

func TestKeyConfig(t *testing.T) {
	srv, keys, _ := start(t, echo, gateway.WithKeyConfigPath("/keys"), gateway.WithKeyConfigMaxAge(10*time.Minute))
	want, err := keys.MarshalKeyConfigs()
	if err != nil {
		t.Fatal(err)
	}
	var etag string
	for _, path := range []string{gateway.DefaultPath, "/keys"} {
		for _, accept := range []string{"application/ohttp-keys", "", "*/*", "text/html, application/*;q=0.5"} {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.Header.Get("Content-Type") != "application/ohttp-keys" ||
				resp.Header.Get("Cache-Control") != "max-age=600" {
				t.Errorf("%s Accept %q: %s %q %q, %x", path, accept, resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), body)
			}
			if etag == "" {
				etag = resp.Header.Get("ETag")
			} else if resp.Header.Get("ETag") != etag {
				t.Errorf("ETag changed: %q, %q", etag, resp.Header.Get("ETag"))
			}
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+gateway.DefaultPath, nil)
	req.Header.Set("If-None-Match", etag)
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %v %v", resp.Status, err)
	}
	req.Header.Del("If-None-Match")
	req.Header.Set("Accept", "text/html")
	checkOuterProblem(t, srv, req, http.StatusNotAcceptable, "about:blank")
	req, _ = http.NewRequest("POST", srv.URL+"/keys", nil)
	resp := checkOuterProblem(t, srv, req, http.StatusMethodNotAllowed, "about:blank")
	if resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", resp.Header.Get("Allow"))
	}
	// a key added is published at once; with no key, 503
	keys.RemoveKey(1)
	req, _ = http.NewRequest("GET", srv.URL+gateway.DefaultPath, nil)
	checkOuterProblem(t, srv, req, http.StatusServiceUnavailable, "about:blank")
}

// checkOuterProblem sends req and checks for an outer problem response.
func checkOuterProblem(t *testing.T, srv *httptest.Server, req *http.Request, status int, typ string) *http.Response {
	t.Helper()
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != gateway.ProblemMediaType {
		t.Fatalf("%s %s: %s %q %s", req.Method, req.URL.Path, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if p := problemOf(t, body); p.Type != typ || p.Status != status || p.Title == "" {
		t.Fatalf("problem %+v, want type %s", p, typ)
	}
	return resp
}

// framedAsHugeChunk returns an unchunked encapsulated request whose
// ciphertext, read as Chunked OHTTP, starts with an 8-byte chunk length
// (beyond any chunk): a chunked opener must call that malformed. Other
// ciphertexts read as a chunk length that fits and then fail to
// authenticate, which the gateway rightly answers as a key problem, so the
// test picks one.
func framedAsHugeChunk(t *testing.T, c *client) []byte {
	t.Helper()
	for range 200 {
		b := sealed(t, c, false)
		if b[twoway.BinaryRequestHeaderLen+32]>>6 == 3 { // X25519: a 32-byte encapsulated key
			return b
		}
	}
	t.Fatal("no ciphertext starting with an 8-byte varint in 200 tries")
	return nil
}

// sealed returns an encapsulated request of a small GET, unchunked.
func sealed(t *testing.T, c *client, chunked bool) []byte {
	t.Helper()
	label := gateway.RequestLabel
	var opts []twoway.Option
	if chunked {
		label, opts = gateway.ChunkedRequestLabel, []twoway.Option{twoway.EnableChunking()}
	}
	s, err := c.sender.NewRequestSealer(bytes.NewReader(encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", nil, nil, nil)), []byte(label), opts...)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(s)
	return b
}

func TestOuterErrors(t *testing.T) {
	srv, _, _ := start(t, echo, gateway.WithMaxRequestLen(1000))
	c := newClient(t, srv)
	good := sealed(t, c, false)
	post := func(body []byte, ct string) *http.Request {
		req, _ := http.NewRequest("POST", srv.URL+gateway.DefaultPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		return req
	}
	unknownKey := bytes.Clone(good)
	unknownKey[0] = 7
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	badSuite := bytes.Clone(good)
	badSuite[4] = 9 // KDF 0x0009
	// Encapsulated keys of small order (X25519's u = 0, and u = 1 with the
	// top bit set): the client's fault, not the key's.
	smallOrder, smallOrderHigh := bytes.Clone(good), bytes.Clone(good)
	clear(smallOrder[7:39])
	clear(smallOrderHigh[7:39])
	smallOrderHigh[7], smallOrderHigh[38] = 1, 0x80
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		typ    string
	}{
		{"unknown key id", post(unknownKey, gateway.RequestMediaType), 400, gateway.KeyProblemType},
		{"decryption failure", post(flipped, gateway.RequestMediaType), 400, gateway.KeyProblemType},
		{"unsupported suite", post(badSuite, gateway.RequestMediaType), 400, gateway.KeyProblemType},
		{"encapsulated key of small order", post(smallOrder, gateway.RequestMediaType), 400, gateway.KeyProblemType},
		{"encapsulated key of small order, top bit set", post(smallOrderHigh, gateway.RequestMediaType), 400, gateway.KeyProblemType},
		{"chunked request under the unchunked media type", post(sealed(t, c, true), gateway.RequestMediaType), 400, gateway.KeyProblemType},
		{"unchunked request under the chunked media type", post(framedAsHugeChunk(t, c), gateway.ChunkedRequestMediaType), 400, "about:blank"},
		{"truncated header", post(good[:5], gateway.RequestMediaType), 400, "about:blank"},
		{"truncated", post(good[:40], gateway.RequestMediaType), 400, "about:blank"},
		{"too large", post(make([]byte, 1001), gateway.RequestMediaType), 413, "about:blank"},
		{"wrong media type", post(good, "application/octet-stream"), 415, "about:blank"},
		{"no media type", post(good, ""), 415, "about:blank"},
		{"wrong path", func() *http.Request { r := post(good, gateway.RequestMediaType); r.URL.Path = "/other"; return r }(), 404, "about:blank"},
		{"Expect", func() *http.Request {
			r := post(good, gateway.RequestMediaType)
			r.Header.Set("Expect", "100-continue")
			return r
		}(), 417, "about:blank"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkOuterProblem(t, srv, tc.req, tc.status, tc.typ)
		})
	}
	t.Run("wrong method", func(t *testing.T) {
		req, _ := http.NewRequest("PUT", srv.URL+gateway.DefaultPath, nil)
		resp := checkOuterProblem(t, srv, req, 405, "about:blank")
		if resp.Header.Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("Allow %q", resp.Header.Get("Allow"))
		}
	})
	t.Run("too large, chunked", func(t *testing.T) {
		big := encodeRequest(t, bhttp.IndeterminateLengthRequest, "POST", "/", nil, make([]byte, 5000), nil)
		x, err := c.send(context.Background(), bytes.NewReader(big), true)
		if err != nil {
			t.Fatal(err)
		}
		defer x.outer.Body.Close()
		if x.outer.StatusCode != 413 {
			t.Fatalf("outer %s", x.outer.Status)
		}
	})
}

// innerProblem sends msg and checks for an encapsulated problem response.
func innerProblem(t *testing.T, c *client, msg []byte, chunked bool, status int) {
	t.Helper()
	outer, resp, content := c.roundTrip(t, msg, chunked)
	if outer.StatusCode != 200 {
		t.Fatalf("outer %s", outer.Status)
	}
	if resp.Status != status || field(resp.Header, "content-type") != gateway.ProblemMediaType {
		t.Fatalf("inner %d %q %s", resp.Status, field(resp.Header, "content-type"), content)
	}
	if p := problemOf(t, content); p.Status != status {
		t.Fatalf("problem %+v", p)
	}
}

func TestEncapsulatedErrors(t *testing.T) {
	// an origin that is down, and one that is slow
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := &url.URL{Scheme: "http", Host: dead.Addr().String()}
	dead.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()
	slowURL, _ := url.Parse(slow.URL)
	proxy := func(u *url.URL) http.Handler {
		p := httputil.NewSingleHostReverseProxy(u)
		p.ErrorHandler = gateway.OriginErrorHandler
		return p
	}
	mux := http.NewServeMux()
	mux.Handle("/dead/", proxy(deadURL))
	mux.Handle("/slow/", proxy(slowURL))
	mux.Handle("/stuck", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(700 * time.Millisecond) }))
	mux.Handle("/", echo)
	srv, _, _ := start(t, mux, gateway.WithHandlerTimeout(300*time.Millisecond), gateway.WithMaxHeaderLen(1024),
		gateway.WithTargetPolicy(func(r *http.Request) error {
			if r.Host != "origin.example" {
				return errors.New("target not allowed")
			}
			return nil
		}))
	c := newClient(t, srv)
	get := func(path string) []byte {
		return encodeRequest(t, bhttp.KnownLengthRequest, "GET", path, nil, nil, nil)
	}
	for _, chunked := range []bool{false, true} {
		for _, tc := range []struct {
			name   string
			msg    []byte
			status int
		}{
			{"bad binary http", append(get("/")[:8], 0xff, 0xff), 400},
			{"uppercase field name", encodeRequestRaw(t, "X-A"), 400},
			{"connection-specific field", encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", []bhttp.Field{{Name: "transfer-encoding", Value: "chunked"}}, nil, nil), 400},
			{"host disagrees with authority", encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", []bhttp.Field{{Name: "host", Value: "other"}}, nil, nil), 400},
			{"header too large", encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", []bhttp.Field{{Name: "a", Value: strings.Repeat("b", 2000)}}, nil, nil), 431},
			{"forbidden target", func() []byte {
				b, _ := bhttp.AppendRequest(nil, &bhttp.Request{Framing: bhttp.KnownLengthRequest, Method: "GET", Scheme: "https", Authority: "evil.example", Path: "/"}, nil, nil)
				return b
			}(), 403},
			{"origin down", get("/dead/x"), 502},
			{"origin timeout", get("/slow/x"), 504},
			{"handler timeout", get("/stuck"), 504},
		} {
			t.Run(tc.name, func(t *testing.T) {
				innerProblem(t, c, tc.msg, chunked, tc.status)
			})
		}
	}
}

// encodeRequestRaw encodes a GET whose one header field has the given name,
// bypassing the encoder's lowercasing.
func encodeRequestRaw(t *testing.T, name string) []byte {
	b := encodeRequest(t, bhttp.IndeterminateLengthRequest, "GET", "/", []bhttp.Field{{Name: strings.ToLower(name), Value: "v"}}, nil, nil)
	i := bytes.Index(b, []byte(strings.ToLower(name)))
	copy(b[i:], name)
	return b
}

// TestStreaming checks that a chunked exchange streams both ways: the
// inner handler reads the request's first part before the client has sent
// the rest, and the client gets each flushed part while the handler is
// still blocked.
func TestStreaming(t *testing.T) {
	gotFirst := make(chan string, 1)
	release := make(chan struct{})
	srv, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Error(err)
			return
		}
		gotFirst <- string(buf)
		io.WriteString(w, "first")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Error(err)
		}
		<-release
		rest, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		io.WriteString(w, "second:"+string(rest))
	}))
	c := newClient(t, srv)
	pr, pw := io.Pipe()
	head, _ := bhttp.AppendRequestHead(nil, &bhttp.Request{Method: "POST", Scheme: "https", Authority: "origin.example", Path: "/"})
	go pw.Write(bhttp.AppendChunk(head, []byte("hello")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	xch := make(chan *exchange, 1)
	go func() {
		x, err := c.send(ctx, pr, true)
		if err != nil {
			t.Error(err)
			close(xch)
			return
		}
		xch <- x
	}()
	select {
	case s := <-gotFirst:
		if s != "hello" {
			t.Fatalf("first part %q", s)
		}
	case <-ctx.Done():
		t.Fatal("the handler did not get the request's first part")
	}
	x := <-xch
	if x == nil {
		t.FailNow()
	}
	defer x.outer.Body.Close()
	resp, err := x.open()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first response part %q %v", buf, err)
	}
	t.Logf("time to first chunk: %v (the handler is still blocked)", time.Since(t0))
	close(release)
	go func() {
		pw.Write(bhttp.AppendChunk(nil, []byte(" world")))
		end, _ := bhttp.AppendEnd(nil, nil)
		pw.Write(end)
		pw.Close()
	}()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second: world" {
		t.Fatalf("rest %q %v", rest, err)
	}
}

// TestChunkedFailureAfterCommit checks that a chunked request that fails
// after the response has started ends the response without its final
// chunk: the client sees a truncated message, never a complete one.
func TestChunkedFailureAfterCommit(t *testing.T) {
	srv, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "started")
		w.(http.Flusher).Flush()
		io.Copy(io.Discard, r.Body) // fails; the handler ignores it
		io.WriteString(w, " and done")
	}))
	c := newClient(t, srv)
	msg := encodeRequest(t, bhttp.IndeterminateLengthRequest, "POST", "/", nil, bytes.Repeat([]byte("x"), 20000), nil)
	s, err := c.sender.NewRequestSealer(bytes.NewReader(msg), []byte(gateway.ChunkedRequestLabel), twoway.EnableChunking())
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := io.ReadAll(s)
	enc[len(enc)-30] ^= 1 // in the final chunk
	req, _ := http.NewRequest("POST", c.url, bytes.NewReader(enc))
	req.Header.Set("Content-Type", gateway.ChunkedRequestMediaType)
	outer, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Body.Close()
	x := &exchange{outer: outer, sealer: s}
	resp, err := x.open()
	if err != nil {
		t.Fatal(err)
	}
	content, err := io.ReadAll(resp.Body)
	if !errors.Is(err, twoway.ErrTruncated) {
		t.Fatalf("content %q, err %v: want ErrTruncated", content, err)
	}
}

func TestConcurrencyBound(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	srv, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}), gateway.WithMaxConcurrent(1), gateway.WithRetryAfter(3*time.Second))
	c := newClient(t, srv)
	msg := encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", nil, nil, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.roundTrip(t, msg, false)
	}()
	<-entered
	t0 := time.Now()
	req, _ := http.NewRequest("POST", c.url, bytes.NewReader(sealed(t, c, false)))
	req.Header.Set("Content-Type", gateway.RequestMediaType)
	resp := checkOuterProblem(t, srv, req, http.StatusServiceUnavailable, "about:blank")
	if resp.Header.Get("Retry-After") != "3" || time.Since(t0) > time.Second {
		t.Errorf("Retry-After %q after %v", resp.Header.Get("Retry-After"), time.Since(t0))
	}
	close(release)
	<-done
}
