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

// benchRow is a row of runRows: its name, and for a row served partly by
// other processes (its plugins), their process IDs, whose CPU time counts
// towards the row's; procs is nil for a row served in this process alone.
type benchRow struct {
	name  string
	procs func() []int
}

// benchSetup is one row of BenchmarkGateway: a server on loopback and how
// the shared client sends it one request of the payload.
type benchSetup struct {
	benchRow
	do func(hc *http.Client, payload []byte) error
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
//	plain           a POST of the payload to the origin, no OHTTP
//	bare            plain plus the same HPKE and Binary HTTP work done
//	                inline with circl, crypto/hkdf and crypto/cipher, no
//	                gateway code
//	gateway         the gateway around the origin, the key in this process
//	gateway-soft    the same with the same key as the soft key the plugin's
//	                soft backend serves (kem's software key and its
//	                decapsulation, where the gateway row's circl key uses
//	                circl's HPKE)
//	plugin-soft     the gateway with the same key served by the plugin
//	                binary (a soft key file, in a twoway-hsm plugin process)
//	plugin-softhsm  the gateway with a key on a SoftHSM2 token, served by
//	                the plugin binary (softhsmProcesses processes)
//
// All rows use X25519 keys and the same client code. The plugin rows run
// the real twoway-hsm binary, built once per test process, as a server
// author loads it (plugins.NewClient); their CPU per request includes the
// plugin processes' CPU time, reported on its own as -plugin-cpu-µs/req
// too (their allocations are not counted: the -allocs/req are this
// process's). Without SoftHSM2 the softhsm row is left out, or the
// benchmark fails when TWOWAY_HSM_REQUIRED=1.
//
// Every request's response is opened and checked (an inner 200 and the
// echoed payload). Each round runs benchBatch requests on each of
// benchWorkers clients per row.
// Run: go test ./gateway -run '^$' -bench 'BenchmarkGateway$' -benchtime 20x -count 5
func BenchmarkGateway(b *testing.B) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * benchWorkers}}
	defer hc.CloseIdleConnections()
	setups := gatewaySetups(b)
	payload := bytes.Repeat([]byte("p"), benchPayload)
	rows := make([]benchRow, len(setups))
	for j, s := range setups { // warm up and check every row
		rows[j] = s.benchRow
		for range 20 {
			if err := s.do(hc, payload); err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
		}
	}
	runRows(b, rows, func(j int) error {
		return runWorkers(func() error { return setups[j].do(hc, payload) })
	})
}

// benchRatios are the pairs of rows whose ratio of requests per second
// runRows reports, measured in the same run: what the gateway costs over
// the bare work, and what the plugin costs over the key in this process
// (plugin-soft/gateway-soft: the same key and the same X25519 code on
// both sides of the boundary).
var benchRatios = [][2]string{{"gateway", "bare"}, {"plugin-soft", "gateway"}, {"plugin-soft", "gateway-soft"}, {"plugin-softhsm", "gateway"}}

// runRows runs the rows of a benchmark side by side: each iteration runs
// every row's batch (benchWorkers × benchBatch requests) once, in rotating
// order, and each row's requests per second, CPU per request (of the whole
// process, from getrusage, plus that of the row's other processes, read
// from their CPU clocks before and after each batch) and allocations per
// request (count and bytes, from runtime.MemStats, of this process) are
// reported under its name; for the pairs of benchRatios present, their
// ratio of requests per second too.
func runRows(b *testing.B, rows []benchRow, batch func(row int) error) {
	wall := make([]time.Duration, len(rows))
	cpu := make([]time.Duration, len(rows))
	other := make([]time.Duration, len(rows))
	mallocs := make([]uint64, len(rows))
	alloc := make([]uint64, len(rows))
	var m0, m1 runtime.MemStats
	b.ResetTimer()
	for i := range b.N {
		for k := range rows {
			j := (i + k) % len(rows)
			var p0 map[int]time.Duration
			if rows[j].procs != nil {
				p0 = procsCPU(b, rows[j].procs())
			}
			runtime.ReadMemStats(&m0)
			c0, t0 := cpuTime(b), time.Now()
			if err := batch(j); err != nil {
				b.Fatalf("%s: %v", rows[j].name, err)
			}
			wall[j] += time.Since(t0)
			cpu[j] += cpuTime(b) - c0
			runtime.ReadMemStats(&m1)
			mallocs[j] += m1.Mallocs - m0.Mallocs
			alloc[j] += m1.TotalAlloc - m0.TotalAlloc
			if p0 != nil {
				p1 := procsCPU(b, rows[j].procs())
				if len(p1) != len(p0) {
					b.Fatalf("%s: processes %v before the batch, %v after", rows[j].name, p0, p1)
				}
				for pid, c := range p1 {
					c0, ok := p0[pid]
					if !ok {
						b.Fatalf("%s: processes %v before the batch, %v after", rows[j].name, p0, p1)
					}
					other[j] += c - c0
				}
			}
		}
	}
	b.StopTimer()
	n := float64(b.N * benchWorkers * benchBatch)
	rate := map[string]float64{}
	for j, r := range rows {
		rate[r.name] = n / wall[j].Seconds()
		b.ReportMetric(rate[r.name], r.name+"-req/s")
		b.ReportMetric(float64((cpu[j]+other[j]).Nanoseconds())/1e3/n, r.name+"-cpu-µs/req")
		if r.procs != nil {
			b.ReportMetric(float64(other[j].Nanoseconds())/1e3/n, r.name+"-plugin-cpu-µs/req")
		}
		b.ReportMetric(float64(mallocs[j])/n, r.name+"-allocs/req")
		b.ReportMetric(float64(alloc[j])/n, r.name+"-B/req")
	}
	for _, p := range benchRatios {
		if rate[p[0]] > 0 && rate[p[1]] > 0 {
			b.ReportMetric(rate[p[0]]/rate[p[1]], p[0]+"/"+p[1]+"-req/s")
		}
	}
}

// procsCPU returns the CPU time so far of each process of pids.
func procsCPU(b *testing.B, pids []int) map[int]time.Duration {
	m := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		c, err := processCPU(pid)
		if err != nil {
			b.Fatalf("CPU time of process %d: %v", pid, err)
		}
		m[pid] = c
	}
	return m
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
// it, the key in a twoway.Gateway, and handlers with the key around the
// echo origin: bare (see bareGateway), the gateway, and the gateway with
// the key as the soft key the plugin's soft backend serves (gatewaySoft:
// kem's software key where the others use circl's HPKE).
type benchEnv struct {
	sender        *twoway.RequestSender
	softKey       kem.PrivateKey // the same key as the plugin's soft backend holds it, for a key file
	keys          *twoway.Gateway
	bare, gateway http.Handler
	gatewaySoft   http.Handler
}

var benchSuite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)

func newBenchEnv(b testing.TB) *benchEnv {
	b.Helper()
	pub, priv, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().GenerateKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	sender, err := twoway.NewRequestSender(benchSuite, 1, pub, nil)
	if err != nil {
		b.Fatal(err)
	}
	key, err := kem.FromCircl(priv)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := priv.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	soft, err := kem.NewPrivateKey(kem.DHKEMX25519HKDFSHA256, raw)
	if err != nil {
		b.Fatal(err)
	}
	keys, gw := echoGateway(b, key)
	_, gwSoft := echoGateway(b, soft)
	return &benchEnv{sender: sender, softKey: soft, keys: keys, bare: bareGateway(b, priv, echo), gateway: gw, gatewaySoft: gwSoft}
}

// echoGateway returns a twoway.Gateway with key as key id 1, and the
// gateway around the echo origin with it.
func echoGateway(b testing.TB, key kem.PrivateKey) (*twoway.Gateway, http.Handler) {
	b.Helper()
	keys := twoway.NewGateway(nil)
	if err := keys.AddKey(1, key, testSuite); err != nil {
		b.Fatal(err)
	}
	gw, err := gateway.New(keys, echo, gateway.WithLogger(quietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	return keys, gw
}

// seal seals a known-length POST of payload to the echo origin.
func (e *benchEnv) seal(payload []byte) (*twoway.RequestSealer, error) {
	return sealEcho(e.sender, payload)
}

// sealEcho seals a known-length POST of payload to the echo origin with
// sender.
func sealEcho(sender *twoway.RequestSender, payload []byte) (*twoway.RequestSealer, error) {
	msg, err := bhttp.AppendRequest(nil, &bhttp.Request{Framing: bhttp.KnownLengthRequest, Method: "POST", Scheme: "https",
		Authority: "origin.example", Path: "/"}, payload, nil)
	if err != nil {
		return nil, err
	}
	return sender.NewRequestSealer(bytes.NewReader(msg), []byte(gateway.RequestLabel))
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

// gatewaySetups returns the rows plain, bare, gateway and those through the
// plugin (see pluginSetups), all around the echo origin.
func gatewaySetups(b *testing.B) []benchSetup {
	env := newBenchEnv(b)
	serve := func(h http.Handler) string {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		return srv.URL
	}

	plainURL := serve(echo)
	plain := benchSetup{benchRow{name: "plain"}, func(hc *http.Client, payload []byte) error {
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

	ohttpDo := func(url string, sender *twoway.RequestSender) func(*http.Client, []byte) error {
		return func(hc *http.Client, payload []byte) error {
			s, err := sealEcho(sender, payload)
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
	setups := []benchSetup{plain,
		{benchRow{name: "bare"}, ohttpDo(serve(env.bare), env.sender)},
		{benchRow{name: "gateway"}, ohttpDo(serve(env.gateway), env.sender)},
		{benchRow{name: "gateway-soft"}, ohttpDo(serve(env.gatewaySoft), env.sender)}}
	for _, p := range pluginSetups(b, env) {
		gw, err := gateway.New(p.keys, echo, gateway.WithLogger(quietLogger()))
		if err != nil {
			b.Fatal(err)
		}
		setups = append(setups, benchSetup{benchRow{p.name, p.client.PIDs}, ohttpDo(serve(gw), p.sender)})
	}
	return setups
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
