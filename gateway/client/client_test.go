package client_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
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
