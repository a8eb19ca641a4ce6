package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/client"
	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// demoGateway is the demo's server side: the OHTTP gateway handler (the
// one twoway-hsm gateway serves) on a loopback listener, with the key the
// plugin serves, in front of an origin handler that echoes each request;
// and its client side, an OHTTP client of package gateway/client. The
// demo process is both, as a gateway and one of its clients would be.
type demoGateway struct {
	key     *roundtrip.TimedKey
	srv     *http.Server
	clients [2]*http.Client // unchunked, chunked
	size    int
}

// demoEcho is the origin: it answers with the request's content.
var demoEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
})

// startDemoGateway serves key through the gateway on 127.0.0.1 and
// fetches its key configuration as a client would.
func startDemoGateway(ctx context.Context, key kem.PrivateKey, size int) (*demoGateway, error) {
	d := &demoGateway{key: roundtrip.NewTimedKey(key), size: size}
	keys := twoway.NewGateway(nil)
	if err := keys.AddKey(1, d.key, defaultSuites(key.KEM())...); err != nil {
		return nil, err
	}
	h, err := gateway.New(keys, demoEcho)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d.srv = gateway.NewServer(ln.Addr().String(), h)
	go d.srv.Serve(ln)
	url := "http://" + ln.Addr().String() + gateway.DefaultPath
	hc := &http.Client{Timeout: 30 * time.Second}
	kc, err := client.FetchKeyConfig(ctx, hc, url)
	if err != nil {
		d.Close()
		return nil, err
	}
	for i, chunked := range []bool{false, true} {
		d.clients[i] = &http.Client{Transport: &client.Transport{URL: url, Config: kc, HTTP: hc, Chunked: chunked}}
	}
	return d, nil
}

// Run sends one request through the gateway, unchunked or chunked, and
// checks that the echo is the request's content.
func (d *demoGateway) Run(ctx context.Context, chunked bool) error {
	want := make([]byte, d.size)
	rand.Read(want)
	c := d.clients[0]
	if chunked {
		c = d.clients[1]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://origin.example/echo", bytes.NewReader(want))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the origin answered %s", resp.Status)
	}
	if !bytes.Equal(got, want) {
		return errors.New("the response is not the request's content")
	}
	return nil
}

// Decapsulations are the times the key took to decapsulate (the calls
// into the plugin).
func (d *demoGateway) Decapsulations() []time.Duration { return d.key.Durations() }

// Close stops the gateway.
func (d *demoGateway) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.srv.Shutdown(ctx)
}
