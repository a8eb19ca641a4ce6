package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openpcc/ohttp"

	"github.com/twoway-hsm/twoway-hsm/gateway"
)

// recordingTransport records the Content-Type of each request it sends.
type recordingTransport struct {
	rt  http.RoundTripper
	mu  sync.Mutex
	cts []string
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.cts = append(r.cts, req.Header.Get("Content-Type"))
	r.mu.Unlock()
	return r.rt.RoundTrip(req)
}

// TestInteropOpenPCC sends requests through the gateway with the OHTTP
// client of github.com/openpcc/ohttp v0.0.37 (an implementation this
// project did not write), unchunked and chunked, using the key
// configuration as the gateway publishes it.
func TestInteropOpenPCC(t *testing.T) {
	srv, _, _ := start(t, echo)
	resp, err := srv.Client().Get(srv.URL + gateway.DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var kcs ohttp.KeyConfigs
	if err := kcs.UnmarshalBinary(body); err != nil {
		t.Fatalf("openpcc cannot parse the key configuration: %v", err)
	}
	rec := &recordingTransport{rt: srv.Client().Transport}
	tr, err := ohttp.NewTransport(kcs[0], srv.URL+gateway.DefaultPath, ohttp.WithHTTPClient(&http.Client{Transport: rec}))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: tr}
	for _, chunked := range []bool{false, true} {
		payload := strings.Repeat("interop ", 3000)
		var reqBody io.Reader = strings.NewReader(payload)
		if chunked {
			pr, pw := io.Pipe()
			go func() { io.WriteString(pw, payload); pw.Close() }()
			reqBody = pr // unknown length: openpcc sends it chunked
		}
		req, _ := http.NewRequest("POST", "https://origin.example/interop?x=1", reqBody)
		req.Header.Set("X-Test", "yes")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("chunked=%v: %v", chunked, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(got) != payload {
			t.Fatalf("chunked=%v: %d, %d bytes, %v", chunked, resp.StatusCode, len(got), err)
		}
		if resp.Header.Get("X-Url") != "https://origin.example/interop?x=1" || resp.Header.Get("X-Method") != "POST" {
			t.Errorf("chunked=%v: inner request %q", chunked, resp.Header)
		}
	}
	want := []string{gateway.RequestMediaType, gateway.ChunkedRequestMediaType}
	if len(rec.cts) != 2 || rec.cts[0] != want[0] || rec.cts[1] != want[1] {
		t.Errorf("openpcc sent %q, want %q", rec.cts, want)
	}
}
