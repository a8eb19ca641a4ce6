package gateway_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
)

// BenchmarkServeHTTP measures the server side alone, without a network
// or a client: the same sealed request served by bare (the least an OHTTP
// gateway does, as in BenchmarkGateway) and by the gateway with the key in
// this process, around the echo origin, each round benchBatch requests on
// each of benchWorkers goroutines per row, in rotating order. What the
// gateway adds per request shows here without the noise of loopback HTTP.
// Each row's response is opened and checked (an inner 200 and the echoed
// payload) before the timed loop; in it, every response must be as long
// as the checked one, which an encapsulated error (also an outer 200) is
// not. The allocations per request include the httptest request and
// recorder of each, the same for both rows.
// Run: go test ./gateway -run '^$' -bench BenchmarkServeHTTP -count 5
func BenchmarkServeHTTP(b *testing.B) {
	env := newBenchEnv(b)
	payload := bytes.Repeat([]byte("p"), benchPayload)
	s, err := env.seal(payload)
	if err != nil {
		b.Fatal(err)
	}
	sealed, _ := io.ReadAll(s)
	rows := []struct {
		name string
		h    http.Handler
		n    int // the length of the checked response
	}{{name: "bare", h: env.bare}, {name: "gateway", h: env.gateway}}
	serve := func(h http.Handler) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, gateway.DefaultPath, bytes.NewReader(sealed))
		req.Header.Set("Content-Type", gateway.RequestMediaType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	brows := make([]benchRow, len(rows))
	for j := range rows {
		brows[j] = benchRow{name: rows[j].name}
		rec := serve(rows[j].h)
		rows[j].n = rec.Body.Len()
		if rec.Code != 200 {
			b.Fatalf("%s: outer %d %s", rows[j].name, rec.Code, rec.Body)
		}
		if err := openEcho(s, rec.Body, payload); err != nil {
			b.Fatalf("%s: %v", rows[j].name, err)
		}
	}
	runRows(b, brows, func(j int) error {
		return runWorkers(func() error {
			if rec := serve(rows[j].h); rec.Code != 200 || rec.Body.Len() != rows[j].n {
				return fmt.Errorf("outer %d, %d bytes of %d", rec.Code, rec.Body.Len(), rows[j].n)
			}
			return nil
		})
	})
}

// TestServeHTTPAllocs guards the allocations of one unchunked request of
// benchPayload bytes through the handler, the HPKE and AEAD work included:
// the request and its body, the ResponseWriter and the origin (which reads
// the body into io.Discard and writes a fixed answer) allocate nothing per
// request, so what is counted is the gateway's: 136 with Go 1.26, of which
// the HPKE setup and the two AEAD contexts are most.
func TestServeHTTPAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations (sync.Pool drops items at random)")
	}
	const ceiling = 140
	answer := bytes.Repeat([]byte("a"), benchPayload)
	ct := []string{"application/octet-stream"}
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = ct
		w.Write(answer)
	})
	env := newBenchEnv(t)
	h, err := gateway.New(env.keys, origin, gateway.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.seal(bytes.Repeat([]byte("p"), benchPayload))
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := io.ReadAll(s)
	body := &rewindBody{}
	req := httptest.NewRequest(http.MethodPost, gateway.DefaultPath, nil)
	req.Header.Set("Content-Type", gateway.RequestMediaType)
	req.Body, req.ContentLength = body, int64(len(sealed))
	w := &sinkWriter{header: make(http.Header)}
	serve := func() {
		body.r.Reset(sealed)
		clear(w.header)
		w.status, w.out = 0, w.out[:0]
		h.ServeHTTP(w, req)
	}
	serve()
	if w.status != 200 {
		t.Fatalf("outer %d %s", w.status, w.out)
	}
	// the response is the origin's
	o, err := s.NewResponseOpener(bytes.NewReader(w.out), []byte(gateway.ResponseLabel))
	if err != nil {
		t.Fatal(err)
	}
	r, err := bhttp.ReadResponse(o, bhttp.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r.Body); err != nil || r.Status != 200 || !bytes.Equal(got, answer) {
		t.Fatalf("inner %d, %d bytes, %v", r.Status, len(got), err)
	}
	n := len(w.out)
	allocs := testing.AllocsPerRun(50, func() {
		serve()
		if w.status != 200 || len(w.out) != n {
			t.Fatalf("outer %d, %d bytes of %d", w.status, len(w.out), n)
		}
	})
	t.Logf("%v allocations per request", allocs)
	if allocs > ceiling {
		t.Errorf("%v allocations per unchunked request, the ceiling is %d", allocs, ceiling)
	}
}

// rewindBody is a request body that can be served again.
type rewindBody struct{ r bytes.Reader }

func (b *rewindBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *rewindBody) Close() error               { return nil }

// sinkWriter is a ResponseWriter that keeps the response in a buffer it
// reuses.
type sinkWriter struct {
	header http.Header
	status int
	out    []byte
}

func (w *sinkWriter) Header() http.Header { return w.header }
func (w *sinkWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *sinkWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	w.out = append(w.out, p...)
	return len(p), nil
}
