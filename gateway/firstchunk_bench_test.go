package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
)

// flushOrigin streams a response in two parts: it writes "first", notes
// when it flushed it, and writes "second" only once the client has read
// the first part (release), so the first part cannot ride with the rest.
type flushOrigin struct {
	flushed atomic.Int64 // UnixNano of the last flush of the first part
	release atomic.Pointer[chan struct{}]
}

func (o *flushOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "first")
	o.flushed.Store(time.Now().UnixNano())
	w.(http.Flusher).Flush()
	if ch := o.release.Load(); ch != nil {
		select {
		case <-*ch:
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
			return
		}
	}
	io.WriteString(w, "second")
}

// BenchmarkFirstChunk measures, for a streamed (chunked) response, the
// time from the origin's first Flush to the client's reading of that first
// part, opened: the issue's "time to first streamed chunk within 1 ms of
// the origin's first flush". One request at a time, in rotating order:
//
//	plain    the origin over loopback HTTP, no OHTTP (the floor)
//	inner    a Chunked OHTTP request to the gateway whose inner handler
//	         is the origin's handler
//	proxied  the gateway in front of the origin on its own loopback
//	         server through httputil.ReverseProxy with FlushInterval -1,
//	         as twoway-hsm gateway forwards
//
// It reports each row's p50 and p99 in µs (-first-µs-p50, -p99) and the
// gateway's addition to the floor at p50 (inner-added-µs-p50,
// proxied-added-µs-p50). Every response is checked: "first", then
// "second", inner status 200.
// Run: go test ./gateway -run '^$' -bench FirstChunk -count 5
func BenchmarkFirstChunk(b *testing.B) {
	origin := &flushOrigin{}
	originSrv := httptest.NewServer(origin)
	defer originSrv.Close()
	ou, _ := url.Parse(originSrv.URL)
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(ou) },
		FlushInterval: -1,
		ErrorHandler:  gateway.OriginErrorHandler,
	}
	innerSrv, _, _ := start(b, origin)
	proxiedSrv, _, _ := start(b, proxy)
	innerC, proxiedC := newClient(b, innerSrv), newClient(b, proxiedSrv)
	head := encodeRequest(b, bhttp.IndeterminateLengthRequest, "GET", "/stream", nil, nil, nil)
	hc := originSrv.Client()

	type row struct {
		name string
		open func(ctx context.Context) (io.ReadCloser, error) // the response content
	}
	ohttp := func(c *client) func(ctx context.Context) (io.ReadCloser, error) {
		return func(ctx context.Context) (io.ReadCloser, error) {
			x, err := c.send(ctx, bytes.NewReader(head), true)
			if err != nil {
				return nil, err
			}
			resp, err := x.open()
			if err == nil && resp.Status != 200 {
				err = fmt.Errorf("inner status %d", resp.Status)
			}
			if err != nil {
				x.outer.Body.Close()
				return nil, err
			}
			return struct {
				io.Reader
				io.Closer
			}{resp.Body, x.outer.Body}, nil
		}
	}
	rows := []row{
		{"plain", func(ctx context.Context) (io.ReadCloser, error) {
			req, _ := http.NewRequestWithContext(ctx, "GET", originSrv.URL+"/stream", nil)
			resp, err := hc.Do(req)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode != 200 {
				resp.Body.Close()
				return nil, fmt.Errorf("status %d", resp.StatusCode)
			}
			return resp.Body, nil
		}},
		{"inner", ohttp(innerC)},
		{"proxied", ohttp(proxiedC)},
	}
	one := func(r row) (time.Duration, error) {
		release := make(chan struct{})
		origin.release.Store(&release)
		released := false
		defer func() {
			if !released {
				close(release)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		body, err := r.open(ctx)
		if err != nil {
			return 0, err
		}
		defer body.Close()
		first := make([]byte, 5)
		if _, err := io.ReadFull(body, first); err != nil || string(first) != "first" {
			return 0, fmt.Errorf("first part %q: %v", first, err)
		}
		d := time.Duration(time.Now().UnixNano() - origin.flushed.Load())
		close(release)
		released = true
		rest, err := io.ReadAll(body)
		if err != nil || string(rest) != "second" {
			return 0, fmt.Errorf("second part %q: %v", rest, err)
		}
		return d, nil
	}
	lat := make([][]time.Duration, len(rows))
	for _, r := range rows { // warm up and check every row
		for range 10 {
			if _, err := one(r); err != nil {
				b.Fatalf("%s: %v", r.name, err)
			}
		}
	}
	b.ResetTimer()
	for i := range b.N {
		for k := range rows {
			j := (i + k) % len(rows)
			d, err := one(rows[j])
			if err != nil {
				b.Fatalf("%s: %v", rows[j].name, err)
			}
			lat[j] = append(lat[j], d)
		}
	}
	b.StopTimer()
	p50 := make([]float64, len(rows))
	for j, r := range rows {
		slices.Sort(lat[j])
		p50[j] = float64(lat[j][len(lat[j])/2].Nanoseconds()) / 1e3
		b.ReportMetric(p50[j], r.name+"-first-µs-p50")
		b.ReportMetric(float64(lat[j][len(lat[j])*99/100].Nanoseconds())/1e3, r.name+"-first-µs-p99")
		if j > 0 {
			b.ReportMetric(p50[j]-p50[0], r.name+"-added-µs-p50")
		}
	}
	b.ReportMetric(0, "ns/op")
}
