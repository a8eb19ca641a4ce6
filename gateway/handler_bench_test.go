package gateway_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// BenchmarkServeHTTP measures the server side alone, without a network
// or a client: the same sealed request served by bare (the least an OHTTP
// gateway does, as in BenchmarkGateway) and by the gateway with the key in
// this process, around the echo origin, each round benchBatch requests on
// each of benchWorkers goroutines per row, in rotating order. What the
// gateway adds per request shows here without the noise of loopback HTTP.
// Run: go test ./gateway -run '^$' -bench BenchmarkServeHTTP -count 5
func BenchmarkServeHTTP(b *testing.B) {
	pub, priv, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().GenerateKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	sender, err := twoway.NewRequestSender(hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM), 1, pub, nil)
	if err != nil {
		b.Fatal(err)
	}
	key, err := kem.FromCircl(priv)
	if err != nil {
		b.Fatal(err)
	}
	keys := twoway.NewGateway(nil)
	if err := keys.AddKey(1, key, testSuite); err != nil {
		b.Fatal(err)
	}
	gw, err := gateway.New(keys, echo, gateway.WithLogger(quietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	msg, err := bhttp.AppendRequest(nil, &bhttp.Request{Framing: bhttp.KnownLengthRequest, Method: "POST", Scheme: "https",
		Authority: "origin.example", Path: "/"}, bytes.Repeat([]byte("p"), benchPayload), nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := sender.NewRequestSealer(bytes.NewReader(msg), []byte(gateway.RequestLabel))
	if err != nil {
		b.Fatal(err)
	}
	var sealed bytes.Buffer
	sealed.ReadFrom(s)
	rows := []struct {
		name string
		h    http.Handler
	}{{"bare", bareGateway(b, priv, echo)}, {"gateway", gw}}
	serve := func(h http.Handler) error {
		req := httptest.NewRequest(http.MethodPost, gateway.DefaultPath, bytes.NewReader(sealed.Bytes()))
		req.Header.Set("Content-Type", gateway.RequestMediaType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			return fmt.Errorf("%d %s", rec.Code, rec.Body)
		}
		return nil
	}
	wall := make([]time.Duration, len(rows))
	cpu := make([]time.Duration, len(rows))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for k := range rows {
			j := (i + k) % len(rows)
			c0, t0 := cpuTime(b), time.Now()
			var wg sync.WaitGroup
			errs := make([]error, benchWorkers)
			for w := range benchWorkers {
				wg.Go(func() {
					for range benchBatch {
						if err := serve(rows[j].h); err != nil {
							errs[w] = err
							return
						}
					}
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				b.Fatalf("%s: %v", rows[j].name, err)
			}
			wall[j] += time.Since(t0)
			cpu[j] += cpuTime(b) - c0
		}
	}
	b.StopTimer()
	n := float64(b.N * benchWorkers * benchBatch)
	for j, r := range rows {
		b.ReportMetric(float64(cpu[j].Nanoseconds())/1e3/n, r.name+"-cpu-µs/req")
		b.ReportMetric(n/wall[j].Seconds(), r.name+"-req/s")
	}
	b.ReportMetric(float64(wall[0])/float64(wall[1]), "gateway/bare-req/s")
}
