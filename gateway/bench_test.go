package gateway_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// benchSetup is one row of BenchmarkGateway: a server on loopback and how
// the shared client sends it one request of the payload. Rows through the
// plugin (a soft key, SoftHSM) are added by appending to the table that
// gatewaySetups returns.
type benchSetup struct {
	name string
	do   func(hc *http.Client, payload []byte) error
}

const (
	benchPayload = 1024
	benchWorkers = 4  // concurrent clients
	benchBatch   = 32 // requests per worker per round
)

// BenchmarkGateway compares, side by side in one loop and in rotating
// order, requests per second, CPU and allocations per request (client and
// server together: CPU from getrusage, allocations from the runtime's
// counts) over loopback HTTP with the same client and the same echo origin:
//
//	plain    a POST of the payload to the origin, no OHTTP
//	bare     plain plus the same HPKE and Binary HTTP work done inline with
//	         circl, crypto/hkdf and crypto/cipher, no gateway code
//	gateway  the gateway around the origin, the key in this process
//
// Every request's response is opened and checked (an inner 200 and the
// echoed payload). Each round runs benchBatch requests on each of
// benchWorkers clients per row.
// Run: go test ./gateway -run '^$' -bench BenchmarkGateway -count 5
func BenchmarkGateway(b *testing.B) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * benchWorkers}}
	defer hc.CloseIdleConnections()
	setups := gatewaySetups(b)
	payload := bytes.Repeat([]byte("p"), benchPayload)
	names := make([]string, len(setups))
	for j, s := range setups { // warm up and check every row
		names[j] = s.name
		for range 20 {
			if err := s.do(hc, payload); err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
		}
	}
	runRows(b, names, func(j int) error {
		return runWorkers(func() error { return setups[j].do(hc, payload) })
	})
}

// runRows runs the rows of a benchmark side by side: each iteration runs
// every row's batch (benchWorkers × benchBatch requests) once, in rotating
// order, and each row's requests per second, CPU per request (of the whole
// process, from getrusage) and allocations per request (count and bytes,
// from runtime.MemStats, of the whole process) are reported under its name;
// with rows named bare and gateway, their ratio of requests per second too.
func runRows(b *testing.B, names []string, batch func(row int) error) {
	wall := make([]time.Duration, len(names))
	cpu := make([]time.Duration, len(names))
	mallocs := make([]uint64, len(names))
	alloc := make([]uint64, len(names))
	var m0, m1 runtime.MemStats
	b.ResetTimer()
	for i := range b.N {
		for k := range names {
			j := (i + k) % len(names)
			runtime.ReadMemStats(&m0)
			c0, t0 := cpuTime(b), time.Now()
			if err := batch(j); err != nil {
				b.Fatalf("%s: %v", names[j], err)
			}
			wall[j] += time.Since(t0)
			cpu[j] += cpuTime(b) - c0
			runtime.ReadMemStats(&m1)
			mallocs[j] += m1.Mallocs - m0.Mallocs
			alloc[j] += m1.TotalAlloc - m0.TotalAlloc
		}
	}
	b.StopTimer()
	n := float64(b.N * benchWorkers * benchBatch)
	rate := map[string]float64{}
	for j, name := range names {
		rate[name] = n / wall[j].Seconds()
		b.ReportMetric(rate[name], name+"-req/s")
		b.ReportMetric(float64(cpu[j].Nanoseconds())/1e3/n, name+"-cpu-µs/req")
		b.ReportMetric(float64(mallocs[j])/n, name+"-allocs/req")
		b.ReportMetric(float64(alloc[j])/n, name+"-B/req")
	}
	if rate["bare"] > 0 && rate["gateway"] > 0 {
		b.ReportMetric(rate["gateway"]/rate["bare"], "gateway/bare-req/s")
	}
}

// runWorkers calls do benchBatch times on each of benchWorkers goroutines,
// a worker stopping at its first error.
func runWorkers(do func() error) error {
	var wg sync.WaitGroup
	errs := make([]error, benchWorkers)
	for w := range benchWorkers {
		wg.Go(func() {
			for range benchBatch {
				if err := do(); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchEnv is what the benchmarks share: a fresh X25519 key, a sender to
// it, the key in a twoway.Gateway, and two handlers with the key around the
// echo origin: bare (see bareGateway) and the gateway.
type benchEnv struct {
	sender        *twoway.RequestSender
	keys          *twoway.Gateway
	bare, gateway http.Handler
}

func newBenchEnv(b testing.TB) *benchEnv {
	b.Helper()
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
	return &benchEnv{sender: sender, keys: keys, bare: bareGateway(b, priv, echo), gateway: gw}
}

// seal seals a known-length POST of payload to the echo origin.
func (e *benchEnv) seal(payload []byte) (*twoway.RequestSealer, error) {
	msg, err := bhttp.AppendRequest(nil, &bhttp.Request{Framing: bhttp.KnownLengthRequest, Method: "POST", Scheme: "https",
		Authority: "origin.example", Path: "/"}, payload, nil)
	if err != nil {
		return nil, err
	}
	return e.sender.NewRequestSealer(bytes.NewReader(msg), []byte(gateway.RequestLabel))
}

// openEcho opens the encapsulated response to s's request read from ct and
// checks that it is the echo origin's: an inner 200 with the payload.
func openEcho(s *twoway.RequestSealer, ct io.Reader, payload []byte) error {
	o, err := s.NewResponseOpener(ct, []byte(gateway.ResponseLabel))
	if err != nil {
		return err
	}
	r, err := bhttp.ReadResponse(o, bhttp.Limits{})
	if err != nil {
		return err
	}
	got, err := io.ReadAll(r.Body)
	if err != nil || r.Status != 200 || !bytes.Equal(got, payload) {
		return fmt.Errorf("inner %d, %d bytes, %v", r.Status, len(got), err)
	}
	return nil
}

// gatewaySetups returns the rows plain, bare and gateway, all around the
// echo origin.
func gatewaySetups(b *testing.B) []benchSetup {
	env := newBenchEnv(b)
	serve := func(h http.Handler) string {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		return srv.URL
	}

	plainURL := serve(echo)
	plain := benchSetup{"plain", func(hc *http.Client, payload []byte) error {
		resp, err := hc.Post(plainURL+"/", "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, payload) {
			return fmt.Errorf("echo: %d bytes, %v", len(got), err)
		}
		return nil
	}}

	ohttpDo := func(url string) func(*http.Client, []byte) error {
		return func(hc *http.Client, payload []byte) error {
			s, err := env.seal(payload)
			if err != nil {
				return err
			}
			resp, err := hc.Post(url+gateway.DefaultPath, gateway.RequestMediaType, s)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("outer %s", resp.Status)
			}
			return openEcho(s, resp.Body, payload)
		}
	}
	return []benchSetup{plain, {"bare", ohttpDo(serve(env.bare))}, {"gateway", ohttpDo(serve(env.gateway))}}
}

// bareGateway is the least an OHTTP gateway must do, inline and with no
// gateway code: read the request, open it with circl's HPKE, decode the
// Binary HTTP request, run the origin's handler into a recorder, encode
// its response and seal it (RFC 9458 section 4.4).
func bareGateway(b testing.TB, priv interface {
	MarshalBinary() ([]byte, error)
}, origin http.Handler) http.Handler {
	suite := hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	sk, err := priv.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	skR, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPrivateKey(sk)
	if err != nil {
		b.Fatal(err)
	}
	// circl derives the public key on the first Decapsulate and caches it
	// in the private key, unguarded: concurrent first uses race and may
	// decapsulate with a half-written public key (a failed Open). Derive it
	// now, as kem.FromCircl does for the gateway's key.
	skR.Public()
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusBadRequest) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || len(body) < 7+32 {
			fail(w, fmt.Errorf("short request"))
			return
		}
		hdr, enc, ct := body[:7], body[7:39], body[39:]
		info := append(append([]byte(gateway.RequestLabel), 0), hdr...)
		rcv, err := suite.NewReceiver(skR, info)
		if err != nil {
			fail(w, err)
			return
		}
		opener, err := rcv.Setup(enc)
		if err != nil {
			fail(w, err)
			return
		}
		pt, err := opener.Open(ct, nil)
		if err != nil {
			fail(w, err)
			return
		}
		breq, err := bhttp.ReadRequest(bytes.NewReader(pt), bhttp.Limits{})
		if err != nil {
			fail(w, err)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), breq.Method, breq.Scheme+"://"+breq.Authority+breq.Path, breq.Body)
		if err != nil {
			fail(w, err)
			return
		}
		rec := httptest.NewRecorder()
		origin.ServeHTTP(rec, req)
		var fields []bhttp.Field
		for k, vs := range rec.Header() {
			for _, v := range vs {
				fields = append(fields, bhttp.Field{Name: k, Value: v})
			}
		}
		msg, err := bhttp.AppendResponse(nil, &bhttp.Response{Framing: bhttp.KnownLengthResponse, Status: rec.Code, Header: fields}, rec.Body.Bytes(), nil)
		if err != nil {
			fail(w, err)
			return
		}
		// response key: secret = Export("message/bhttp response", 16);
		// prk = Extract(enc || nonce, secret); key, nonce = Expand(prk, ...)
		secret := opener.Export([]byte(gateway.ResponseLabel), 16)
		out := make([]byte, 16, 16+len(msg)+16)
		rand.Read(out)
		salt := append(append([]byte{}, enc...), out...)
		prk, _ := hkdf.Extract(sha256.New, secret, salt)
		aeadKey, _ := hkdf.Expand(sha256.New, prk, "key", 16)
		aeadNonce, _ := hkdf.Expand(sha256.New, prk, "nonce", 12)
		block, _ := aes.NewCipher(aeadKey)
		gcm, _ := cipher.NewGCM(block)
		out = gcm.Seal(out, aeadNonce, msg, nil)
		w.Header().Set("Content-Type", gateway.ResponseMediaType)
		w.Write(out)
	})
}
