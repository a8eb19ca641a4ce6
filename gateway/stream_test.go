package gateway_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
)

// TestMemoryBounded streams a 256 MiB response through the gateway (and
// the test's own client) and checks that the heap in use never grows by
// more than a few MiB: the gateway holds a chunk, not the message.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	const total, block = 256 << 20, 32 << 10
	srv, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, block)
		for i := range buf {
			buf[i] = byte(i)
		}
		for n := 0; n < total; n += block {
			if _, err := w.Write(buf); err != nil {
				return
			}
			if n%(1<<20) == 0 {
				w.(http.Flusher).Flush()
			}
		}
	}), gateway.WithHandlerTimeout(5*time.Minute))
	c := newClient(t, srv)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	x, err := c.send(context.Background(), strings.NewReader(string(encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", nil, nil, nil))), true)
	if err != nil {
		t.Fatal(err)
	}
	defer x.outer.Body.Close()
	resp, err := x.open()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 64<<10))
	close(stop)
	<-sampled
	if err != nil || n != total {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("heap in use grew by at most %.2f MiB while streaming %d MiB", float64(grew)/(1<<20), total>>20)
	if grew > 8<<20 {
		t.Errorf("heap in use grew by %d bytes", grew)
	}
}

// TestClientDisconnect checks that a client that goes away mid-stream ends
// the inner handler's context and leaves no goroutine behind.
func TestClientDisconnect(t *testing.T) {
	handlerDone := make(chan struct{}, 1)
	srv, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { handlerDone <- struct{}{} }()
		for {
			if _, err := io.WriteString(w, strings.Repeat("x", 1000)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	}))
	c := newClient(t, srv)
	msg := encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", nil, nil, nil)
	c.roundTripPartial(t, msg) // warm up the connection pool
	<-handlerDone
	srv.Client().Transport.(*http.Transport).CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 5 {
		c.roundTripPartial(t, msg)
		select {
		case <-handlerDone:
		case <-time.After(5 * time.Second):
			t.Fatal("the handler did not see the client go")
		}
	}
	srv.Client().Transport.(*http.Transport).CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// roundTripPartial sends a chunked request, reads part of the streamed
// response and goes away.
func (c *client) roundTripPartial(t *testing.T, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x, err := c.send(ctx, strings.NewReader(string(msg)), true)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := x.open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	cancel()
	x.outer.Body.Close()
}

func TestMetrics(t *testing.T) {
	m := gateway.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	srv, _, _ := start(t, echo, gateway.WithMetrics(m))
	c := newClient(t, srv)
	c.roundTrip(t, encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", nil, nil, nil), false)
	c.roundTrip(t, encodeRequest(t, bhttp.KnownLengthRequest, "GET", "/", nil, nil, nil), true)
	req, _ := http.NewRequest("POST", c.url, strings.NewReader("nonsense"))
	req.Header.Set("Content-Type", gateway.RequestMediaType)
	if resp, err := c.hc.Do(req); err == nil {
		resp.Body.Close()
	}
	m.PluginRestarts.Inc()
	got := gathered(t, reg)
	for name, want := range map[string]float64{
		"twoway_gateway_requests_total{outcome=ok}":         2,
		"twoway_gateway_requests_total{outcome=key_config}": 1,
		"twoway_gateway_requests_total{outcome=key_error}":  1, // an unknown suite
		"twoway_gateway_key_uses_total{key_id=1}":           2,
		"twoway_gateway_decapsulation_seconds":              3, // every request opened, the unknown suite too
		"twoway_gateway_origin_seconds":                     2,
		"twoway_gateway_request_seconds":                    3,
		"twoway_gateway_in_flight_requests":                 0,
		"twoway_gateway_plugin_restarts_total":              1,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

// gathered returns every series reg gathers, by its name and labels
// ("name{k=v}{k2=v2}"), with its value (see value).
func gathered(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range mm.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			got[name] = value(mm)
		}
	}
	return got
}

// value is a counter's or gauge's value, or a histogram's count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}
