package client_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/gateway/client"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// start serves a gateway with one soft key in front of an echo handler.
func start(t *testing.T) *httptest.Server {
	t.Helper()
	k, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	if err != nil {
		t.Fatal(err)
	}
	keys := twoway.NewGateway(nil)
	if err := keys.AddKey(3, k, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}); err != nil {
		t.Fatal(err)
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "second\n")
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got", r.Method+" "+r.Host+r.URL.RequestURI()+" "+r.Header.Get("X-Test"))
		w.Write(body)
	})
	h, err := gateway.New(keys, app)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestTransport(t *testing.T) {
	srv := start(t)
	url := srv.URL + gateway.DefaultPath
	kc, err := client.FetchKeyConfig(context.Background(), srv.Client(), url)
	if err != nil || kc.KeyID != 3 {
		t.Fatalf("FetchKeyConfig: %+v %v", kc, err)
	}
	c := &http.Client{Transport: &client.Transport{URL: url, Config: kc, HTTP: srv.Client()}}
	for _, chunked := range []bool{false, true} {
		payload := strings.Repeat("through the gateway ", 5000)
		var body io.Reader = strings.NewReader(payload)
		if chunked {
			pr, pw := io.Pipe()
			go func() { io.WriteString(pw, payload); pw.Close() }()
			body = pr // unknown length: Chunked OHTTP
		}
		req, _ := http.NewRequest("PUT", "https://origin.example/a?b=c", body)
		req.Header.Set("X-Test", "yes")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("chunked=%v: %v", chunked, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != payload || resp.Header.Get("X-Got") != "PUT origin.example/a?b=c yes" {
			t.Fatalf("chunked=%v: %q, %d bytes, %v", chunked, resp.Header.Get("X-Got"), len(got), err)
		}
	}
}

// TestStreamingResponse: with Chunked OHTTP the first part arrives while
// the handler still works on the rest.
func TestStreamingResponse(t *testing.T) {
	srv := start(t)
	url := srv.URL + gateway.DefaultPath
	kc, _ := client.FetchKeyConfig(context.Background(), srv.Client(), url)
	c := &http.Client{Transport: &client.Transport{URL: url, Config: kc, HTTP: srv.Client(), Chunked: true}}
	t0 := time.Now()
	resp, err := c.Get("https://origin.example/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, _ := br.ReadString('\n')
	firstAt := time.Since(t0)
	rest, err := io.ReadAll(br)
	if first != "first\n" || string(rest) != "second\n" || err != nil {
		t.Fatalf("%q %q %v", first, rest, err)
	}
	if time.Since(t0)-firstAt < 200*time.Millisecond {
		t.Errorf("the first part was not streamed")
	}
}

// TestKeyProblem: a configuration the gateway does not have is an
// *OuterError matching ErrKeyProblem.
func TestKeyProblem(t *testing.T) {
	srv := start(t)
	url := srv.URL + gateway.DefaultPath
	kc, _ := client.FetchKeyConfig(context.Background(), srv.Client(), url)
	kc.KeyID = 9
	c := &http.Client{Transport: &client.Transport{URL: url, Config: kc, HTTP: srv.Client()}}
	_, err := c.Get("https://origin.example/")
	var oe *client.OuterError
	if !errors.Is(err, client.ErrKeyProblem) || !errors.As(err, &oe) || oe.Status != http.StatusBadRequest {
		t.Fatalf("unknown key id: %v", err)
	}
	if _, err := client.FetchKeyConfigs(context.Background(), srv.Client(), srv.URL+"/nothing"); err == nil {
		t.Error("a key configuration from a path that serves none")
	}
}

// TestTrailersAndInformational: the inner response's trailer fields fill
// Trailer at the end of the body, and its 1xx responses reach the
// request's httptrace Got1xxResponse, both framings.
func TestTrailersAndInformational(t *testing.T) {
	k, _ := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	keys := twoway.NewGateway(nil)
	keys.AddKey(1, k, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM})
	h, err := gateway.New(keys, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "content")
		w.Header().Set("X-Checksum", "abc")
	}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := srv.URL + gateway.DefaultPath
	kc, err := client.FetchKeyConfig(context.Background(), srv.Client(), url)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunked := range []bool{false, true} {
		c := &http.Client{Transport: &client.Transport{URL: url, Config: kc, HTTP: srv.Client(), Chunked: chunked}}
		var early []string
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			early = append(early, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		}})
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://origin.example/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("chunked=%v: %v", chunked, err)
		}
		if resp.Trailer != nil {
			t.Errorf("chunked=%v: Trailer %v before the body's end", chunked, resp.Trailer)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "content" || resp.Trailer.Get("X-Checksum") != "abc" {
			t.Errorf("chunked=%v: %q, %v, trailer %v", chunked, body, err, resp.Trailer)
		}
		if len(early) != 1 || early[0] != "103 </style.css>; rel=preload" {
			t.Errorf("chunked=%v: informational responses %q", chunked, early)
		}
	}
}

// TestExchangeErrors: outer errors keep their status, problem, Retry-After
// and media type, with the server's texts made printable; a 200 of another
// media type is a *MediaTypeError; a message sealed by Exchange round-trips.
func TestExchangeErrors(t *testing.T) {
	srv := start(t)
	url := srv.URL + gateway.DefaultPath
	kc, _ := client.FetchKeyConfig(context.Background(), srv.Client(), url)

	hdr := []bhttp.Field{{Name: "x-test", Value: "t"}}
	msg, err := bhttp.AppendRequest(nil, &bhttp.Request{Framing: bhttp.KnownLengthRequest, Method: "POST", Scheme: "https", Authority: "o.example", Path: "/x", Header: hdr}, []byte("hi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &client.Transport{URL: url, Config: kc, HTTP: srv.Client()}
	r, err := tr.Exchange(context.Background(), bytes.NewReader(msg), false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r.Body)
	r.Close()
	if err != nil || string(got) != "hi" || r.Status != 200 {
		t.Fatalf("Exchange: %d %q %v", r.Status, got, err)
	}
	head, _ := bhttp.AppendRequestHead(nil, &bhttp.Request{Framing: bhttp.IndeterminateLengthRequest, Method: "POST", Scheme: "https", Authority: "o.example", Path: "/x", Header: hdr})
	r, err = tr.Exchange(context.Background(), client.StreamRequest(head, nil), true)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r.Body)
	r.Close()
	if err != nil || len(got) != 0 || r.Status != 200 {
		t.Fatalf("Exchange, chunked, no content: %d %q %v", r.Status, got, err)
	}

	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/busy":
			w.Header().Set("Content-Type", gateway.ProblemMediaType)
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"type":"about:blank","title":"busy\n\u001b[31mnow","detail":"too many requests"}`)
		case "/html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html></html>")
		}
	}))
	defer busy.Close()
	tr = &client.Transport{URL: busy.URL + "/busy", Config: kc}
	_, err = tr.Exchange(context.Background(), bytes.NewReader(msg), false)
	var oe *client.OuterError
	if !errors.As(err, &oe) || oe.Status != 503 || oe.RetryAfter != "3" || oe.Title != "busy  [31mnow" || oe.Detail != "too many requests" ||
		errors.Is(err, client.ErrKeyProblem) || oe.Describe() != "503 Service Unavailable: busy  [31mnow: too many requests (Retry-After 3)" {
		t.Errorf("503: %#v, %v", oe, err)
	}
	tr.URL = busy.URL + "/html"
	_, err = tr.Exchange(context.Background(), bytes.NewReader(msg), false)
	var me *client.MediaTypeError
	if !errors.As(err, &me) || me.Got != "text/html" || me.Want != gateway.ResponseMediaType {
		t.Errorf("html: %v", err)
	}
	if _, err := client.FetchKeyConfigList(context.Background(), nil, busy.URL+"/html"); !errors.As(err, &me) || me.Want != gateway.KeyConfigMediaType {
		t.Errorf("key configuration as html: %v", err)
	}
}
