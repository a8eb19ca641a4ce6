package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openpcc/ohttp"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// What an operator of twoway-hsm gateway relies on, end to end with the
// built binary on loopback: mutual TLS with relays, Prometheus metrics and
// readiness, key windows over time, and faults under load (the origin
// going away, slow clients, clients leaving mid-stream).

// opsPlain is an HTTP client for the gateway's plain endpoints
// (key configuration, /metrics, /readyz): no keep-alive, so a test's own
// idle connections never show up in the gateway's goroutine count.
var opsPlain = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// servingRecord returns the gateway's "gateway serving" log record. It
// waits for it a moment: stderr and the stdout line that startGateway
// waits for are separate pipes.
func (g *runningGateway) servingRecord(t *testing.T) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, rec := range g.logRecords(t) {
			if rec["msg"] == "gateway serving" {
				return rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 'gateway serving' record:\n%s", g.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricsAddress returns the --metrics-listen address the gateway logged.
func (g *runningGateway) metricsAddress(t *testing.T) string {
	t.Helper()
	a, _ := g.servingRecord(t)["metrics"].(string)
	if a == "" {
		t.Fatalf("the 'gateway serving' record names no metrics address:\n%s", g.stderr.String())
	}
	return a
}

// opsScrape returns the samples of /metrics on addr, by series as the
// text exposition writes it: `name{label="value"}`.
func opsScrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := opsPlain.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("/metrics: a line that is not a sample: %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// opsStatus GETs url and returns the status and body ("" and -1 when the
// request fails).
func opsStatus(url string) (int, string) {
	resp, err := opsPlain.Get(url)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// opsKeys fetches a gateway's key configuration with hc and returns the
// body, its parse by openpcc/ohttp, and the outer response.
func opsKeys(t *testing.T, hc *http.Client, gwURL string) ([]byte, ohttp.KeyConfigs, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest("GET", gwURL, nil)
	req.Header.Set("Accept", gateway.KeyConfigMediaType)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", gwURL, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != gateway.KeyConfigMediaType {
		t.Fatalf("GET %s: %d %q %v", gwURL, resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	var kcs ohttp.KeyConfigs
	if err := kcs.UnmarshalBinary(body); err != nil || len(kcs) == 0 {
		t.Fatalf("the key configuration of %s does not parse (%v): %x", gwURL, err, body)
	}
	return body, kcs, resp
}

// opsKeyIDs returns the key ids of a key configuration list.
func opsKeyIDs(kcs ohttp.KeyConfigs) []byte {
	var ids []byte
	for _, kc := range kcs {
		ids = append(ids, kc.KeyID)
	}
	return ids
}

// opsClient is an openpcc/ohttp client for one key configuration, whose
// outer requests go to gwURL through hc (nil: a plain client).
func opsClient(t *testing.T, kc ohttp.KeyConfig, gwURL string, hc *http.Client) *http.Client {
	t.Helper()
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	tr, err := ohttp.NewTransport(kc, gwURL, ohttp.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// opsPostSealed seals one inner request to kc with openpcc/ohttp, POSTs
// the encapsulated request to gwURL with hc, and returns the outer
// response with its body read.
func opsPostSealed(t *testing.T, hc *http.Client, kc ohttp.KeyConfig, gwURL string) (*http.Response, []byte) {
	t.Helper()
	tr, err := ohttp.NewTransport(kc, gwURL)
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := http.NewRequest("POST", "https://origin.example/sealed", strings.NewReader("sealed to key "+strconv.Itoa(int(kc.KeyID))))
	outer, _, err := tr.Encapsulate(inner)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(outer)
	if err != nil {
		t.Fatalf("POST %s: %v", gwURL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

// opsKeyProblem checks that an outer response is the RFC 9458 key error:
// 400, application/problem+json, type #ohttp-key, which tells a client to
// fetch the key configuration again.
func opsKeyProblem(resp *http.Response, body []byte) error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var p gateway.Problem
	jerr := json.Unmarshal(body, &p)
	if resp.StatusCode != http.StatusBadRequest || mt != gateway.ProblemMediaType || jerr != nil ||
		p.Type != gateway.KeyProblemType || p.Status != http.StatusBadRequest {
		return fmt.Errorf("outer response %d %q %s (%v); want 400 %s of type %s",
			resp.StatusCode, resp.Header.Get("Content-Type"), body, jerr, gateway.ProblemMediaType, gateway.KeyProblemType)
	}
	return nil
}

// opsMarshal returns a key configuration's encoding.
func opsMarshal(t *testing.T, kc ohttp.KeyConfig) []byte {
	t.Helper()
	b, err := kc.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// opsWait polls cond every 100 ms until it returns nil or d has passed,
// and returns its last error.
func opsWait(d time.Duration, cond func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// opsLoad runs n workers that call f (with the worker's number and a
// running count) until d has passed. It fails the test if a call is still
// running 20 s after that (a request hangs). f classifies its own result.
func opsLoad(t *testing.T, n int, d time.Duration, f func(worker, i int)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				f(w, i)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d + 20*time.Second):
		t.Fatalf("requests still running 20 s after the load ended: a request hangs")
	}
}

// TestGatewayMutualTLS: with --tls-cert, --tls-key and --client-ca, a relay
// without a client certificate, or with one from another CA, is refused
// in the handshake and reaches nothing; a relay with one from the CA gets
// the key configuration and round trips (unchunked and chunked, over
// HTTP/1.1 and HTTP/2).
func TestGatewayMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, caKey, caPEM := reqNewCA(t)
	if err := os.WriteFile(filepath.Join(dir, "relays-ca.pem"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	reqIssue(t, ca, caKey, "gateway", x509.ExtKeyUsageServerAuth, dir, "gateway")
	relayCert := reqIssue(t, ca, caKey, "relay", x509.ExtKeyUsageClientAuth, dir, "relay")
	otherCA, otherKey, _ := reqNewCA(t)
	strangerCert := reqIssue(t, otherCA, otherKey, "stranger", x509.ExtKeyUsageClientAuth, dir, "stranger")
	// The gateway's own server certificate as a client certificate: from
	// the right CA but not for client authentication.
	serverAsClient, err := tls.LoadX509KeyPair(filepath.Join(dir, "gateway.pem"), filepath.Join(dir, "gateway.key"))
	if err != nil {
		t.Fatal(err)
	}

	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	origin := newEchoOrigin(t)
	g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", origin.URL,
		"--tls-cert", filepath.Join(dir, "gateway.pem"), "--tls-key", filepath.Join(dir, "gateway.key"),
		"--client-ca", filepath.Join(dir, "relays-ca.pem"))
	gwURL := "https://" + g.addr + gateway.DefaultPath
	if u := g.servingRecord(t)["url"]; u != gwURL {
		t.Errorf("the gateway logged url %v; want %s", u, gwURL)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	relay := func(h2 bool, certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}, ForceAttemptHTTP2: h2}}
	}

	// Refused relays: the handshake fails, for the key configuration and
	// for an OHTTP request alike, and the origin sees nothing.
	_, kcs, _ := opsKeys(t, relay(false, relayCert), gwURL)
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no client certificate", nil},
		{"a client certificate from another CA", []tls.Certificate{strangerCert}},
		{"a server certificate as client certificate", []tls.Certificate{serverAsClient}},
	} {
		for _, h2 := range []bool{false, true} {
			c := relay(h2, tc.certs...)
			resp, err := c.Get(gwURL)
			if err == nil {
				resp.Body.Close()
				t.Errorf("%s (h2 %v): GET answered %d; want the handshake refused", tc.name, h2, resp.StatusCode)
			} else if !h2 && !strings.Contains(err.Error(), "certificate") {
				// (HTTP/2's transport says only "client conn could not
				// be established".)
				t.Errorf("%s (h2 %v): GET failed with %v; want a certificate error from the handshake", tc.name, h2, err)
			}
			if err := roundTrip(opsClient(t, kcs[0], gwURL, c), "/refused", "refused relay", false); err == nil {
				t.Errorf("%s (h2 %v): an OHTTP request went through", tc.name, h2)
			}
		}
	}
	origin.mu.Lock()
	reached := len(origin.headers)
	origin.mu.Unlock()
	if reached != 0 {
		t.Errorf("%d requests of refused relays reached the origin", reached)
	}
	// Not in the clear either.
	if code, body := opsStatus("http://" + g.addr + gateway.DefaultPath); code == 200 {
		t.Errorf("plain HTTP to the TLS listener: 200 %q", body)
	}

	// The relay with its certificate, over HTTP/1.1 and HTTP/2.
	for _, h2 := range []bool{false, true} {
		c := relay(h2, relayCert)
		_, kcs, resp := opsKeys(t, c, gwURL)
		if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
			t.Errorf("h2 %v: the key configuration came over %s; want HTTP/%d", h2, resp.Proto, want)
		}
		oc := opsClient(t, kcs[0], gwURL, c)
		for _, chunked := range []bool{false, true} {
			if err := roundTrip(oc, "/mtls", strings.Repeat("through mutual TLS ", 500), chunked); err != nil {
				t.Errorf("h2 %v, chunked %v: %v\n%s", h2, chunked, err, g.stderr.String())
			}
		}
	}
	origin.mu.Lock()
	reached = len(origin.headers)
	origin.mu.Unlock()
	if reached != 4 {
		t.Errorf("the origin got %d requests; want the relay's 4", reached)
	}
}

// TestGatewayMetricsAndReadiness: with --metrics-listen, /metrics counts
// requests by outcome, key uses by key id, requests in flight, latencies
// of decapsulation, origin and the whole request, and plugin restarts
// after the plugin is killed. /readyz answers 503 while the key's TPM is
// unreachable (liveness stays 200) and 200 again once it is back.
func TestGatewayMetricsAndReadiness(t *testing.T) {
	sw := testenv.StartSWTPM(t, testenv.SWTPMUnixSocket())
	tref := createKey(t, nil, "tpm2:file="+filepath.Join(t.TempDir(), "gw.tpm.pem")+"?tpm="+sw.Transport(), "p256")
	origin := newEchoOrigin(t)
	g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "3="+tref, "--target", origin.URL,
		"--metrics-listen", "127.0.0.1:0")
	maddr := g.metricsAddress(t)
	if maddr == g.addr {
		t.Fatalf("metrics on the OHTTP listener %s", maddr)
	}
	// /metrics is only on the metrics listener.
	if code, _ := opsStatus("http://" + g.addr + "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the OHTTP listener: %d; want 404", code)
	}
	m := opsScrape(t, maddr)
	for _, s := range []string{`twoway_gateway_plugin_restarts_total`, `twoway_gateway_in_flight_requests`} {
		if v, ok := m[s]; !ok || v != 0 {
			t.Errorf("at start %s = %v (present %v); want 0", s, v, ok)
		}
	}

	_, kcs, _ := opsKeys(t, opsPlain, g.url)
	c := opsClient(t, kcs[0], g.url, nil)
	const ok = 6
	for i := range ok {
		if err := roundTrip(c, "/m", "counted", i%2 == 1); err != nil {
			t.Fatalf("round trip %d: %v\n%s", i, err, g.stderr.String())
		}
	}
	// A request to an unknown key id, and one that is not OHTTP.
	unknown := kcs[0]
	unknown.KeyID = 9
	if err := opsKeyProblem(opsPostSealed(t, opsPlain, unknown, g.url)); err != nil {
		t.Errorf("key id 9: %v", err)
	}
	if resp, err := opsPlain.Post(g.url, "text/plain", strings.NewReader("not ohttp")); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST: %v %v; want 415", resp, err)
	} else {
		resp.Body.Close()
	}
	// One slow request: in flight while the origin sleeps, and above
	// 0.5 s in the origin's histogram.
	slow := make(chan error, 1)
	go func() { slow <- roundTrip(c, "/slow", "slow", false) }()
	if err := opsWait(5*time.Second, func() error {
		if v := opsScrape(t, maddr)[`twoway_gateway_in_flight_requests`]; v != 1 {
			return fmt.Errorf("in flight %v; want 1 while /slow is at the origin", v)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if err := <-slow; err != nil {
		t.Fatalf("/slow: %v", err)
	}

	m = opsScrape(t, maddr)
	for series, want := range map[string]float64{
		`twoway_gateway_requests_total{outcome="ok"}`:         ok + 1,
		`twoway_gateway_requests_total{outcome="key_error"}`:  1,
		`twoway_gateway_requests_total{outcome="media_type"}`: 1,
		`twoway_gateway_requests_total{outcome="key_config"}`: 1,
		`twoway_gateway_key_uses_total{key_id="3"}`:           ok + 1,
		`twoway_gateway_in_flight_requests`:                   0,
		`twoway_gateway_origin_seconds_count`:                 ok + 1,
		`twoway_gateway_plugin_restarts_total`:                0,
	} {
		if got, present := m[series]; !present || got != want {
			t.Errorf("%s = %v (present %v); want %v", series, got, present, want)
		}
	}
	if _, present := m[`twoway_gateway_key_uses_total{key_id="9"}`]; present {
		t.Errorf("the unknown key id 9 is counted as a key use")
	}
	for _, h := range []string{"twoway_gateway_decapsulation_seconds", "twoway_gateway_origin_seconds", "twoway_gateway_request_seconds"} {
		n := m[h+"_count"]
		if n < ok+1 || m[h+`_bucket{le="+Inf"}`] != n || m[h+"_sum"] <= 0 {
			t.Errorf("histogram %s: count %v, +Inf bucket %v, sum %v; want at least %d observations", h, n, m[h+`_bucket{le="+Inf"}`], m[h+"_sum"], ok+1)
		}
	}
	if below := m[`twoway_gateway_origin_seconds_bucket{le="0.5"}`]; below != ok {
		t.Errorf("origin latency: %v requests at or under 0.5 s; want the %d quick ones (the 1 s /slow above)", below, ok)
	}
	if m["go_goroutines"] <= 0 || m["process_resident_memory_bytes"] <= 0 {
		t.Errorf("no Go or process metrics: go_goroutines %v, process_resident_memory_bytes %v", m["go_goroutines"], m["process_resident_memory_bytes"])
	}

	// The plugin is killed: the gateway restarts it and counts it.
	g.servingRecord(t)
	pids := g.pluginPIDs(t)
	killPluginCounted(t, g, c, maddr, pids[0])

	// Readiness follows the TPM; liveness does not.
	for _, base := range []string{"http://" + g.addr, "http://" + maddr} {
		if code, body := opsStatus(base + "/readyz"); code != 200 {
			t.Fatalf("%s/readyz with the TPM up: %d %q", base, code, body)
		}
	}
	sw.Stop()
	// Readiness is cached 2 s and a probe takes at most 5 s.
	if err := opsWait(15*time.Second, func() error {
		if code, body := opsStatus("http://" + maddr + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "key 3") {
			return fmt.Errorf("/readyz with the TPM stopped: %d %q; want 503 naming key 3", code, body)
		}
		return nil
	}); err != nil {
		t.Errorf("%v\n%s", err, g.stderr.String())
	}
	if code, body := opsStatus("http://" + g.addr + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz on the OHTTP listener with the TPM stopped: %d %q; want 503", code, body)
	}
	if code, body := opsStatus("http://" + g.addr + "/healthz"); code != 200 {
		t.Errorf("/healthz with the TPM stopped: %d %q; want 200 (the process serves)", code, body)
	}
	// A request meanwhile gets a retryable outer 503, in bounded time.
	start := time.Now()
	resp, body := opsPostSealed(t, opsPlain, kcs[0], g.url)
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusServiceUnavailable ||
		resp.Header.Get("Retry-After") == "" || mt != gateway.ProblemMediaType {
		t.Errorf("a request with the TPM stopped: %d, Retry-After %q, %q %s; want 503 problem details with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
	}
	t.Logf("a request with the TPM stopped was answered %d in %v", resp.StatusCode, time.Since(start).Round(time.Millisecond))
	sw.Start()
	if err := opsWait(20*time.Second, func() error {
		if code, body := opsStatus("http://" + maddr + "/readyz"); code != 200 {
			return fmt.Errorf("/readyz with the TPM back: %d %q; want 200", code, body)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, g.stderr.String())
	}
	if err := roundTrip(c, "/tpm-back", "the TPM is back", true); err != nil {
		t.Errorf("round trip with the TPM back: %v", err)
	}
}

// TestGatewayReloadIsNotARestart: a reload stops the previous keyring's
// plugin on purpose; that is neither counted in plugin_restarts_total nor
// logged as a plugin gone. A plugin of the new keyring that dies still is.
func TestGatewayReloadIsNotARestart(t *testing.T) {
	t.Parallel()
	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	origin := newEchoOrigin(t)
	cfgPath := filepath.Join(t.TempDir(), "gateway.json")
	b, _ := json.Marshal(gatewayConfig{Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", Keys: []gatewayKeyEntry{{ID: 1, Ref: key}}, Target: origin.URL})
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, nil, "--config", cfgPath)
	maddr := g.metricsAddress(t)
	c := ohttpClient(t, g.url)
	reloads := func() (n int, pids []int) {
		for _, rec := range g.logRecords(t) {
			if rec["msg"] == "reloaded" {
				n++
				pids = nil
				for _, p := range rec["plugin_pids"].([]any) {
					pids = append(pids, int(p.(float64)))
				}
			}
		}
		return n, pids
	}
	// The run loop compares the plugin processes once a second: each
	// keyring is left in place for more than a tick, so that the loop
	// sees every one of them (two reloads within a second would show it
	// only the last).
	const tick = 1500 * time.Millisecond
	time.Sleep(tick)
	var pids []int
	for i := 1; i <= 2; i++ {
		g.cmd.Process.Signal(syscall.SIGHUP)
		if err := opsWait(10*time.Second, func() error {
			var n int
			if n, pids = reloads(); n != i {
				return fmt.Errorf("%d reloads logged; want %d", n, i)
			}
			return nil
		}); err != nil {
			t.Fatalf("%v\n%s", err, g.stderr.String())
		}
		time.Sleep(tick)
	}
	if err := roundTrip(c, "/reloaded", "after two reloads", false); err != nil {
		t.Fatalf("round trip after the reloads: %v\n%s", err, g.stderr.String())
	}
	if v := opsScrape(t, maddr)[`twoway_gateway_plugin_restarts_total`]; v != 0 {
		t.Errorf("plugin_restarts_total = %v after two reloads; want 0", v)
	}
	for _, rec := range g.logRecords(t) {
		if rec["level"] == "WARN" {
			t.Errorf("a reload logged a warning: %v", rec)
		}
	}

	if len(pids) == 0 {
		t.Fatalf("the last reload logged no plugin pids:\n%s", g.stderr.String())
	}
	killPluginCounted(t, g, c, maddr, pids[0])
}

// TestGatewayFailedReloadKeepsCertificate: a reload whose key does not
// open changes nothing, not even the certificate, although its new
// certificate files load; the next reload that succeeds takes them.
func TestGatewayFailedReloadKeepsCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, caKey, _ := reqNewCA(t)
	reqIssue(t, ca, caKey, "first", x509.ExtKeyUsageServerAuth, dir, "first")
	reqIssue(t, ca, caKey, "second", x509.ExtKeyUsageServerAuth, dir, "second")
	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	origin := newEchoOrigin(t)
	cfgPath := filepath.Join(dir, "gateway.json")
	writeCfg := func(cert, ref string) {
		b, _ := json.Marshal(gatewayConfig{Listen: "127.0.0.1:0", Keys: []gatewayKeyEntry{{ID: 1, Ref: ref}}, Target: origin.URL,
			TLSCert: filepath.Join(dir, cert+".pem"), TLSKey: filepath.Join(dir, cert+".key")})
		if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("first", key)
	g := startGateway(t, nil, "--config", cfgPath)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	served := func() string {
		conn, err := tls.Dial("tcp", g.addr, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatalf("TLS to the gateway: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := served(); cn != "first" {
		t.Fatalf("at start the gateway serves the certificate of %q; want \"first\"", cn)
	}
	hup := func(msg string) {
		t.Helper()
		before := strings.Count(g.stderr.String(), msg)
		g.cmd.Process.Signal(syscall.SIGHUP)
		if err := opsWait(10*time.Second, func() error {
			if strings.Count(g.stderr.String(), msg) == before {
				return fmt.Errorf("no %s logged after SIGHUP", msg)
			}
			return nil
		}); err != nil {
			t.Fatalf("%v\n%s", err, g.stderr.String())
		}
	}
	writeCfg("second", "soft:file="+filepath.Join(dir, "no-such-key.pem"))
	hup(`"msg":"reload failed`)
	if cn := served(); cn != "first" {
		t.Errorf("after a failed reload the gateway serves the certificate of %q; want \"first\", as before", cn)
	}
	writeCfg("second", key)
	hup(`"msg":"reloaded"`)
	if cn := served(); cn != "second" {
		t.Errorf("after the reload the gateway serves the certificate of %q; want \"second\"", cn)
	}
}

// TestPluginWatch: a process of the watched keyring that goes is reported
// once; the processes of a keyring a reload replaced are not.
func TestPluginWatch(t *testing.T) {
	first, second := &keyring{pids: []int{10, 11}}, &keyring{pids: []int{20}}
	var w pluginWatch
	for _, step := range []struct {
		kr   *keyring
		now  []int
		gone []int
	}{
		{first, []int{10, 11}, nil},
		{first, []int{10, 12}, []int{11}}, // 11 crashed, 12 replaced it
		{first, []int{10, 12}, nil},
		{second, []int{20}, nil}, // a reload: 10 and 12 stop on purpose
		{second, nil, []int{20}}, // 20 crashed, not yet replaced
		{second, []int{21}, nil},
	} {
		if got := w.gone(step.kr, step.now); !slices.Equal(got, step.gone) {
			t.Errorf("gone(%v, %v) = %v; want %v", step.kr.pids, step.now, got, step.gone)
		}
	}
	// A process of the new keyring that died before the first look is
	// still reported.
	var w2 pluginWatch
	if got := w2.gone(second, []int{22}); !slices.Equal(got, []int{20}) {
		t.Errorf("first look at a keyring whose process 20 is gone: %v; want [20]", got)
	}
}

// TestGatewayKeyWindows: keys of a --config file come and go on their
// own, with no reload: key 2 (not_before in a few seconds) is neither
// published nor accepted until then; from then on key 1 (publish_until)
// is no longer published but still accepted, so clients move over, until
// its not_after, when a request sealed to it gets the #ohttp-key error.
func TestGatewayKeyWindows(t *testing.T) {
	t.Parallel()
	k1, k2 := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256), writeSoftKey(t, kem.DHKEMP256HKDFSHA256)
	origin := newEchoOrigin(t)
	// RFC 3339 with whole seconds, as an operator writes it.
	now := time.Now().Truncate(time.Second)
	rotate := now.Add(4 * time.Second) // key 2 starts, key 1 leaves the list
	expire := now.Add(7 * time.Second) // key 1 is gone
	cfg := map[string]any{
		"listen": "127.0.0.1:0",
		"target": origin.URL,
		"keys": []map[string]any{
			{"id": 1, "ref": k1, "publish_until": rotate.Format(time.RFC3339), "not_after": expire.Format(time.RFC3339)},
			{"id": 2, "ref": k2, "not_before": rotate.Format(time.RFC3339)},
		},
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(t.TempDir(), "gateway.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, nil, "--config", cfgPath)
	// Key 2's configuration as its operator prints it (clients do not
	// get it from the gateway before its window).
	var kc2 ohttp.KeyConfigs
	if err := kc2.UnmarshalBinary([]byte(mustRun(t, nil, "key-config", "--key", "2="+k2, "--format", "binary").stdout)); err != nil || len(kc2) != 1 {
		t.Fatalf("key-config of key 2: %v", err)
	}
	published := func() (ohttp.KeyConfigs, string) {
		_, kcs, resp := opsKeys(t, opsPlain, g.url)
		return kcs, resp.Header.Get("ETag")
	}
	accepted := func(kc ohttp.KeyConfig) error {
		return roundTrip(opsClient(t, kc, g.url, nil), "/window", "within its window", false)
	}
	refused := func(kc ohttp.KeyConfig) error {
		return opsKeyProblem(opsPostSealed(t, opsPlain, kc, g.url))
	}

	// Before the rotation: key 1 only.
	kcs, etag1 := published()
	if ids := opsKeyIDs(kcs); !bytes.Equal(ids, []byte{1}) {
		t.Fatalf("published key ids at start %v; want [1]", ids)
	}
	kc1 := kcs[0]
	if err := accepted(kc1); err != nil {
		t.Errorf("key 1 at start: %v", err)
	}
	if err := refused(kc2[0]); err != nil {
		t.Errorf("key 2 before its not_before: %v", err)
	}
	if time.Now().After(rotate.Add(-200 * time.Millisecond)) {
		t.Fatalf("the gateway took until %v (rotation at %v) to start: too slow to check the window", time.Now(), rotate)
	}

	// The rotation: key 2 published and accepted, key 1 accepted only.
	if err := opsWait(time.Until(rotate)+3*time.Second, func() error {
		if kcs, _ := published(); !bytes.Equal(opsKeyIDs(kcs), []byte{2}) {
			return fmt.Errorf("published key ids %v; want [2] from %v", opsKeyIDs(kcs), rotate)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v (now %v)\n%s", err, time.Now(), g.stderr.String())
	}
	if time.Now().Before(rotate) {
		t.Errorf("key 2 was published at %v, before its not_before %v", time.Now(), rotate)
	}
	kcs, etag2 := published()
	if etag2 == etag1 || etag2 == "" {
		t.Errorf("the ETag did not change with the list: %q, then %q", etag1, etag2)
	}
	if got, _ := kcs[0].MarshalBinary(); !bytes.Equal(got, opsMarshal(t, kc2[0])) {
		t.Errorf("the gateway publishes another key 2 than key-config prints")
	}
	if err := accepted(kcs[0]); err != nil {
		t.Errorf("key 2 in its window: %v", err)
	}
	if err := accepted(kc1); err != nil {
		t.Errorf("key 1 between publish_until and not_after (still accepted): %v", err)
	}
	if time.Now().After(expire) {
		t.Fatalf("checks of the rotation ended at %v, after key 1's not_after %v: too slow", time.Now(), expire)
	}

	// Key 1's not_after passes: the key error, so clients refetch.
	if err := opsWait(time.Until(expire)+3*time.Second, func() error {
		err := refused(kc1)
		if err == nil && time.Now().Before(expire) {
			t.Errorf("key 1 refused at %v, before its not_after %v", time.Now(), expire)
		}
		return err
	}); err != nil {
		t.Fatalf("key 1 after its not_after: %v (now %v)\n%s", err, time.Now(), g.stderr.String())
	}
	if err := accepted(kc2[0]); err != nil {
		t.Errorf("key 2 after key 1 expired: %v", err)
	}
	logs := g.stderr.String()
	for _, want := range []string{`"msg":"key accepted","key_id":2`, `"msg":"key no longer accepted","key_id":1,"state":"expired"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s:\n%s", want, logs)
		}
	}
}

// restartableOrigin is an echo origin on a fixed loopback address that a
// test stops and starts again.
type restartableOrigin struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
}

func newRestartableOrigin(t *testing.T) *restartableOrigin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &restartableOrigin{addr: ln.Addr().String()}
	o.serve(ln)
	t.Cleanup(o.stop)
	return o
}

func (o *restartableOrigin) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Path", r.URL.RequestURI())
		w.Write(body)
	})}
	o.mu.Lock()
	o.srv = srv
	o.mu.Unlock()
	go srv.Serve(ln)
}

func (o *restartableOrigin) stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.srv != nil {
		o.srv.Close()
		o.srv = nil
	}
}

// start serves on the same address again (called off the test's
// goroutine, so it reports instead of failing the test).
func (o *restartableOrigin) start() error {
	var ln net.Listener
	err := opsWait(3*time.Second, func() (err error) { ln, err = net.Listen("tcp", o.addr); return err })
	if err != nil {
		return fmt.Errorf("the origin cannot listen on %s again: %w", o.addr, err)
	}
	o.serve(ln)
	return nil
}

// TestGatewayFaultsUnderLoad: concurrent clients for a few seconds while
// the origin goes away and comes back, slow clients trickle their headers,
// and clients leave in the middle of streamed responses.
func TestGatewayFaultsUnderLoad(t *testing.T) {
	t.Parallel()
	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)

	// The origin is stopped and started again: every request gets the
	// origin's answer or an encapsulated 502, none hangs, and the service
	// comes back with the origin.
	t.Run("origin restart", func(t *testing.T) {
		t.Parallel()
		origin := newRestartableOrigin(t)
		g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", "http://"+origin.addr)
		c := ohttpClient(t, g.url)
		var ok, badGateway, okAfter atomic.Int64
		var restarted atomic.Bool
		var other atomic.Value
		go func() {
			time.Sleep(700 * time.Millisecond)
			origin.stop()
			time.Sleep(800 * time.Millisecond)
			if err := origin.start(); err != nil {
				t.Error(err)
			}
			restarted.Store(true)
		}()
		opsLoad(t, 4, 3*time.Second, func(w, i int) {
			start := time.Now()
			err := roundTrip(c, "/o", "origin restarts", (w+i)%2 == 0)
			switch {
			case time.Since(start) > 5*time.Second:
				other.CompareAndSwap(nil, fmt.Errorf("a request took %v", time.Since(start)))
			case err == nil:
				ok.Add(1)
				if restarted.Load() {
					okAfter.Add(1)
				}
			case strings.HasPrefix(err.Error(), "status 502,"):
				badGateway.Add(1)
			default:
				other.CompareAndSwap(nil, err)
			}
		})
		t.Logf("%d ok (%d after the restart), %d encapsulated 502", ok.Load(), okAfter.Load(), badGateway.Load())
		if err, _ := other.Load().(error); err != nil {
			t.Errorf("a request got neither the origin's answer nor an encapsulated 502: %v", err)
		}
		if badGateway.Load() == 0 {
			t.Errorf("no encapsulated 502 while the origin was down")
		}
		if okAfter.Load() == 0 {
			t.Errorf("no request succeeded after the origin came back\n%s", g.stderr.String())
		}
	})

	// Slow clients trickle a header byte by byte: the server's
	// --read-header-timeout (2 s here, 10 s by default) closes each
	// connection, and the other clients are served meanwhile.
	t.Run("slow headers", func(t *testing.T) {
		t.Parallel()
		origin := newEchoOrigin(t)
		const headerTimeout = 2 * time.Second
		g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", origin.URL, "--read-header-timeout", headerTimeout.String())
		c := ohttpClient(t, g.url)
		const slow = 4
		closed := make(chan time.Duration, slow)
		for range slow {
			conn, err := net.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			go func() {
				// The reader sees the close (a timed-out header gets no
				// answer).
				io.Copy(io.Discard, conn)
				closed <- time.Since(start)
			}()
			go func() {
				head := "POST " + gateway.DefaultPath + " HTTP/1.1\r\nHost: " + g.addr + "\r\nX-Trickle: "
				for i := 0; ; i++ {
					b := byte('a' + i%26)
					if i < len(head) {
						b = head[i]
					}
					if _, err := conn.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
		}
		var ok atomic.Int64
		var failed atomic.Value
		opsLoad(t, 4, 2500*time.Millisecond, func(w, i int) {
			if err := roundTrip(c, "/fast", "not held up", (w+i)%2 == 0); err != nil {
				failed.CompareAndSwap(nil, err)
			} else {
				ok.Add(1)
			}
		})
		if err, _ := failed.Load().(error); err != nil || ok.Load() < 10 {
			t.Errorf("while slow clients trickle: %d ok, first failure %v", ok.Load(), err)
		}
		// Closed after the timeout, and long before the default's 10 s.
		deadline := time.After(headerTimeout + 3*time.Second)
		for range slow {
			select {
			case d := <-closed:
				t.Logf("a trickling connection was closed after %v", d.Round(time.Millisecond))
				if d < headerTimeout-100*time.Millisecond {
					t.Errorf("a trickling connection was closed after %v, before --read-header-timeout %v", d, headerTimeout)
				}
			case <-deadline:
				t.Fatalf("a connection trickling its header is still open %v after it opened (--read-header-timeout %v)", headerTimeout+3*time.Second, headerTimeout)
			}
		}
		if err := roundTrip(c, "/after", "after the slow clients", false); err != nil {
			t.Errorf("after the slow clients: %v", err)
		}
	})

	// Clients leave in the middle of chunked streamed responses: the
	// gateway cancels the origin's request, its goroutines return to
	// where they were, nothing stays in flight, and other clients are
	// served throughout.
	t.Run("disconnect mid-stream", func(t *testing.T) {
		t.Parallel()
		var streaming atomic.Int64
		origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/forever" {
				body, _ := io.ReadAll(r.Body)
				w.Header().Set("X-Method", r.Method)
				w.Header().Set("X-Path", r.URL.RequestURI())
				w.Write(body)
				return
			}
			streaming.Add(1)
			defer streaming.Add(-1)
			w.Header().Set("Content-Type", "text/plain")
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				if _, err := io.WriteString(w, "token\n"); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-tick.C:
				}
			}
		})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go origin.Serve(ln)
		t.Cleanup(func() { origin.Close() })
		g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", "http://"+ln.Addr().String(),
			"--metrics-listen", "127.0.0.1:0")
		maddr := g.metricsAddress(t)
		_, kcs, _ := opsKeys(t, opsPlain, g.url)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		c := opsClient(t, kcs[0], g.url, hc)
		if err := roundTrip(c, "/warm", "warm up", true); err != nil {
			t.Fatal(err)
		}
		hc.CloseIdleConnections()
		goroutines := func() float64 { return opsScrape(t, maddr)["go_goroutines"] }
		time.Sleep(200 * time.Millisecond)
		base := goroutines()

		var left, ok atomic.Int64
		var failed atomic.Value
		opsLoad(t, 6, 2500*time.Millisecond, func(w, i int) {
			if w < 2 {
				// Other clients, served all along.
				if err := roundTrip(c, "/other", "others are served", i%2 == 0); err != nil {
					failed.CompareAndSwap(nil, fmt.Errorf("another client: %w", err))
				} else {
					ok.Add(1)
				}
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			go func() { io.WriteString(pw, "stream to me"); pw.Close() }() // chunked
			req, _ := http.NewRequestWithContext(ctx, "POST", "https://origin.example/forever", pr)
			resp, err := c.Do(req)
			if err != nil {
				failed.CompareAndSwap(nil, fmt.Errorf("a streaming request: %w", err))
				return
			}
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || line != "token\n" || resp.StatusCode != 200 {
				failed.CompareAndSwap(nil, fmt.Errorf("a streaming response: %d %q %v", resp.StatusCode, line, err))
			}
			// Leave: cancel and close the connection under the stream.
			cancel()
			resp.Body.Close()
			left.Add(1)
		})
		if err, _ := failed.Load().(error); err != nil {
			t.Errorf("%v\n%s", err, g.stderr.String())
		}
		if left.Load() < 10 || ok.Load() < 5 {
			t.Errorf("%d clients left mid-stream and %d other requests succeeded; want more of both", left.Load(), ok.Load())
		}
		hc.CloseIdleConnections()
		if err := opsWait(5*time.Second, func() error {
			if n := streaming.Load(); n != 0 {
				return fmt.Errorf("the origin still streams %d responses to clients that left", n)
			}
			m := opsScrape(t, maddr)
			if v := m["twoway_gateway_in_flight_requests"]; v != 0 {
				return fmt.Errorf("%v requests in flight; want 0", v)
			}
			if n := m["go_goroutines"]; n > base+3 {
				return fmt.Errorf("%v goroutines after %d clients left mid-stream; %v before", n, left.Load(), base)
			}
			return nil
		}); err != nil {
			t.Errorf("%v\n%s", err, g.stderr.String())
		}
		m := opsScrape(t, maddr)
		if gone := m[`twoway_gateway_requests_total{outcome="canceled"}`] + m[`twoway_gateway_requests_total{outcome="aborted"}`]; gone != float64(left.Load()) {
			t.Errorf("%v requests counted canceled or aborted; %d clients left mid-stream", gone, left.Load())
		}
		if err := roundTrip(c, "/after", "still healthy", true); err != nil {
			t.Errorf("after the disconnects: %v", err)
		}
		if code, body := opsStatus("http://" + g.addr + "/readyz"); code != 200 {
			t.Errorf("/readyz after the disconnects: %d %q", code, body)
		}
	})
}

// TestGatewayFlagsAreConfig: every configuration flag of the gateway
// command is a field of the --config file under the flag's name (dashes as
// underscores; --key is "keys"), and every field is a flag.
func TestGatewayFlagsAreConfig(t *testing.T) {
	var out bytes.Buffer
	e := &environment{stdin: strings.NewReader(""), stdinFd: -1, stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	if code := dispatch(context.Background(), e, []string{"gateway", "-h"}); code != 0 {
		t.Fatalf("gateway -h: exit %d\n%s", code, out.String())
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "-") && !strings.HasPrefix(f[0], "--") {
			name := strings.TrimPrefix(f[0], "-")
			if name == "config" || name == "v" || name == "json" {
				continue // how the configuration is given, and logging
			}
			if name == "key" {
				name = "keys"
			}
			flags[strings.ReplaceAll(name, "-", "_")] = true
		}
	}
	fields := map[string]bool{}
	rt := reflect.TypeOf(gatewayConfig{})
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		fields[name] = true
		if !flags[name] {
			t.Errorf("config field %q has no flag", name)
		}
	}
	for name := range flags {
		if !fields[name] {
			t.Errorf("flag for %q has no config field", name)
		}
	}
	if len(flags) < 20 {
		t.Errorf("only %d flags read from the usage:\n%s", len(flags), out.String())
	}
}

// killPluginCounted kills the gateway's plugin process pid and checks that
// the gateway serves again within 10 s and counts one plugin restart.
func killPluginCounted(t *testing.T, g *runningGateway, c *http.Client, maddr string, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := opsWait(10*time.Second, func() error { return roundTrip(c, "/after-kill", "again", false) }); err != nil {
		t.Fatalf("no round trip within 10 s of the plugin's death: %v\n%s", err, g.stderr.String())
	}
	if err := opsWait(5*time.Second, func() error {
		if v := opsScrape(t, maddr)[`twoway_gateway_plugin_restarts_total`]; v != 1 {
			return fmt.Errorf("plugin_restarts_total = %v; want 1 after one kill", v)
		}
		return nil
	}); err != nil {
		t.Errorf("%v\n%s", err, g.stderr.String())
	}
}
