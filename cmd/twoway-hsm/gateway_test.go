package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openpcc/ohttp"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/internal/syncbuf"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// The end-to-end tests of twoway-hsm gateway: the built binary, serving on
// loopback HTTP in front of a real origin, with keys through its plugin,
// reached by an OHTTP client this project did not write
// (github.com/openpcc/ohttp).

// runningGateway is a gateway process started by a test.
type runningGateway struct {
	cmd    *exec.Cmd
	url    string // http://ADDR/.well-known/ohttp-gateway
	addr   string
	stderr *syncbuf.Buffer
	done   chan error
}

// startGateway starts the binary as `gateway --listen 127.0.0.1:0 args...`
// and waits until it listens. The test's cleanup stops it with SIGTERM and
// checks that it exits 0.
func startGateway(t *testing.T, env []string, args ...string) *runningGateway {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"gateway"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &runningGateway{cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				lines <- addr
			}
		}
	}()
	go func() { g.done <- cmd.Wait() }()
	select {
	case g.addr = <-lines:
	case err := <-g.done:
		t.Fatalf("gateway exited before listening: %v\n%s", err, g.stderr.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("gateway did not listen within 30 s\n%s", g.stderr.String())
	}
	g.url = "http://" + g.addr + gateway.DefaultPath
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop sends SIGTERM and requires a clean exit.
func (g *runningGateway) stop(t *testing.T) {
	if g.cmd.ProcessState != nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.done:
		g.done <- err
		if err != nil {
			t.Errorf("gateway exited with %v\n%s", err, g.stderr.String())
		}
	case <-time.After(60 * time.Second):
		g.cmd.Process.Kill()
		t.Errorf("gateway did not stop within 60 s of SIGTERM\n%s", g.stderr.String())
	}
}

// logRecords returns the gateway's JSON log records.
func (g *runningGateway) logRecords(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(g.stderr.String(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("a log line is not a JSON record: %q", line)
			continue
		}
		out = append(out, rec)
	}
	return out
}

// pluginPIDs returns the plugin processes the gateway logged at start.
func (g *runningGateway) pluginPIDs(t *testing.T) []int {
	var pids []int
	for _, p := range g.servingRecord(t)["plugin_pids"].([]any) {
		pids = append(pids, int(p.(float64)))
	}
	return pids
}

// echoOrigin is a real HTTP origin on loopback that answers with what it
// received, and records the headers of every request.
type echoOrigin struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
	remote  []string
}

func newEchoOrigin(t *testing.T) *echoOrigin {
	o := &echoOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.headers = append(o.headers, r.Header.Clone())
		o.remote = append(o.remote, r.RemoteAddr)
		o.mu.Unlock()
		if r.URL.Path == "/stream" {
			// Two parts with a pause: a streamed response reaches the
			// client part by part.
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "first part\n")
			w.(http.Flusher).Flush()
			time.Sleep(500 * time.Millisecond)
			io.WriteString(w, "second part\n")
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Path", r.URL.RequestURI())
		w.Header().Set("X-Host", r.Host)
		w.Write(body)
	}))
	t.Cleanup(o.Close)
	return o
}

// ohttpClient returns an openpcc/ohttp client for the gateway's first
// published key.
func ohttpClient(t *testing.T, gwURL string) *http.Client {
	t.Helper()
	resp, err := http.Get(gwURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != gateway.KeyConfigMediaType {
		t.Fatalf("key configuration: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var kcs ohttp.KeyConfigs
	if err := kcs.UnmarshalBinary(body); err != nil || len(kcs) == 0 {
		t.Fatalf("key configuration does not parse: %v", err)
	}
	tr, err := ohttp.NewTransport(kcs[0], gwURL)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// roundTrip sends one POST through the gateway, chunked (a body of unknown
// length) or not, and checks the echo.
func roundTrip(c *http.Client, path, payload string, chunked bool) error {
	var body io.Reader = strings.NewReader(payload)
	if chunked {
		pr, pw := io.Pipe()
		go func() { io.WriteString(pw, payload); pw.Close() }()
		body = pr
	}
	req, _ := http.NewRequest("POST", "https://origin.example"+path, body)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(got) != payload || resp.Header.Get("X-Path") != path || resp.Header.Get("X-Method") != "POST" {
		return fmt.Errorf("status %d, %d bytes, headers %v", resp.StatusCode, len(got), resp.Header)
	}
	return nil
}

// createKey makes a key with the binary, as an operator does, and returns
// its reference.
func createKey(t *testing.T, env []string, ref, kemName string) string {
	t.Helper()
	v := keyJSON(t, env, "keys", "create", ref, "--kem", kemName)
	return v.Ref
}

// TestGatewayBackends: the gateway serves requests with keys on SoftHSM,
// in swtpm and in a soft key file, all through its plugin, unchunked and
// chunked, to a real origin that sees nothing of the outer request.
func TestGatewayBackends(t *testing.T) {
	tok := testenv.SoftHSM(t)
	sw := testenv.StartSWTPM(t, testenv.SWTPMUnixSocket())
	dir := t.TempDir()
	env := tok.Environ()
	pref := createKey(t, env, tok.URI("id=%01", "object=gw"), "p256")
	tref := createKey(t, env, "tpm2:file="+filepath.Join(dir, "gw.tpm.pem")+"?tpm="+sw.Transport(), "p256")
	sref := createKey(t, env, "soft:file="+filepath.Join(dir, "gw.pem"), "x25519")
	origin := newEchoOrigin(t)
	for _, tc := range []struct{ name, ref string }{{"pkcs11", pref}, {"tpm2", tref}, {"soft", sref}} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, env, "--listen", "127.0.0.1:0", "--key", "7="+tc.ref, "--target", origin.URL)
			c := ohttpClient(t, g.url)
			for _, chunked := range []bool{false, true} {
				if err := roundTrip(c, "/echo?x=1", strings.Repeat("secret payload ", 2000), chunked); err != nil {
					t.Fatalf("chunked=%v: %v\n%s", chunked, err, g.stderr.String())
				}
			}
			for _, p := range []string{"/healthz", "/readyz"} {
				resp, err := http.Get("http://" + g.addr + p)
				if err != nil || resp.StatusCode != 200 {
					t.Errorf("%s: %v %v", p, resp, err)
				}
				resp.Body.Close()
			}
			g.stop(t)
			// Logs are JSON records with no plaintext and no PIN.
			logs := g.stderr.String()
			if strings.Contains(logs, "secret payload") || strings.Contains(logs, tok.PIN) {
				t.Errorf("the log holds plaintext or the PIN:\n%s", logs)
			}
			g.logRecords(t)
		})
	}
	// Nothing of the outer request reached the origin.
	origin.mu.Lock()
	defer origin.mu.Unlock()
	for _, h := range origin.headers {
		for _, name := range []string{"X-Forwarded-For", "Forwarded", "Via", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := h.Get(name); v != "" {
				t.Errorf("the origin got %s: %q", name, v)
			}
		}
		if ct := h.Get("Content-Type"); strings.Contains(ct, "ohttp") {
			t.Errorf("the origin got the outer Content-Type %q", ct)
		}
	}
}

// TestGatewayStreaming: with chunked OHTTP, the first part of a streamed
// response reaches the client while the origin is still producing the
// rest.
func TestGatewayStreaming(t *testing.T) {
	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	origin := newEchoOrigin(t)
	g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", origin.URL)
	c := ohttpClient(t, g.url)
	pr, pw := io.Pipe()
	go func() { io.WriteString(pw, "go"); pw.Close() }() // unknown length: chunked
	req, _ := http.NewRequest("POST", "https://origin.example/stream", pr)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	firstAt := time.Since(start)
	if err != nil || first != "first part\n" {
		t.Fatalf("first part: %q %v", first, err)
	}
	rest, _ := io.ReadAll(br)
	restAt := time.Since(start)
	if string(rest) != "second part\n" {
		t.Fatalf("rest: %q", rest)
	}
	// The origin pauses 500 ms between the parts: the first must arrive
	// well before the second.
	if restAt-firstAt < 300*time.Millisecond {
		t.Errorf("the first part came %v before the end: the response was not streamed", restAt-firstAt)
	}
}

// TestGatewayErrors: what a client and an operator see when something is
// wrong.
func TestGatewayErrors(t *testing.T) {
	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	// An origin that is not there: 502 inside an outer 200.
	g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", "http://127.0.0.1:1")
	c := ohttpClient(t, g.url)
	req, _ := http.NewRequest("GET", "https://origin.example/", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("dead origin: inner status %d, want 502", resp.StatusCode)
	}
	// --allow-origin: a listed authority goes through, another is 403.
	origin := newEchoOrigin(t)
	host := strings.TrimPrefix(origin.URL, "http://")
	g2 := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--allow-origin", host)
	c2 := ohttpClient(t, g2.url)
	req, _ = http.NewRequest("POST", "http://"+host+"/allowed", strings.NewReader("x"))
	if resp, err := c2.Do(req); err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Path") != "/allowed" {
		t.Errorf("allowed origin: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest("GET", "http://elsewhere.example/", nil)
	if resp, err := c2.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("unlisted origin: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	// Bad command lines are usage errors before anything starts.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", "1=" + key, "--target", origin.URL}, "no --listen"},
		{[]string{"--listen", ":0", "--target", origin.URL}, "no --key"},
		{[]string{"--listen", ":0", "--key", "1=" + key}, "no origin"},
		{[]string{"--listen", ":0", "--key", "1=" + key, "--target", "ftp://x"}, "--target"},
		{[]string{"--listen", ":0", "--key", "1=pkcs11:token=a?pin-value=1234", "--target", origin.URL}, "pin-value"},
		{[]string{"--listen", ":0", "--key", "1=soft:fiel=/x", "--target", origin.URL}, `unknown path attribute "fiel"`},
		{[]string{"--listen", ":0", "--key", "1=" + key, "--key", "1=" + key, "--target", origin.URL}, "twice"},
		{[]string{"--config", "/nonexistent.json", "--listen", ":0"}, "--config and --listen"},
	} {
		r := run(t, nil, "", append([]string{"gateway"}, tc.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "1234") {
			t.Errorf("gateway %q: exit %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// TestGatewayReloadUnderLoad: clients keep sending while the configuration
// file gains a key and SIGHUP reloads it; no request is lost, and the new
// key is published.
func TestGatewayReloadUnderLoad(t *testing.T) {
	k1, k2 := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256), writeSoftKey(t, kem.DHKEMP256HKDFSHA256)
	origin := newEchoOrigin(t)
	cfgPath := filepath.Join(t.TempDir(), "gateway.json")
	writeCfg := func(keys ...gatewayKeyEntry) {
		b, _ := json.Marshal(gatewayConfig{Listen: "127.0.0.1:0", Keys: keys, Target: origin.URL})
		if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(gatewayKeyEntry{ID: 1, Ref: k1})
	g := startGateway(t, nil, "--config", cfgPath)
	c := ohttpClient(t, g.url)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := roundTrip(c, "/load", "under load", false); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	// Key 2 added; key 1 stays accepted but is no longer published.
	past := time.Now().Add(-time.Minute)
	writeCfg(gatewayKeyEntry{ID: 1, Ref: k1, PublishUntil: &past}, gatewayKeyEntry{ID: 2, Ref: k2})
	g.cmd.Process.Signal(syscall.SIGHUP)
	wg.Wait()
	if failed.Load() > 0 || ok.Load() < 10 {
		t.Fatalf("reload under load: %d ok, %d failed (first: %v)\n%s", ok.Load(), failed.Load(), firstErr.Load(), g.stderr.String())
	}
	if !strings.Contains(g.stderr.String(), `"msg":"reloaded"`) {
		t.Fatalf("no reload logged:\n%s", g.stderr.String())
	}
	resp, err := http.Get(g.url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var kcs ohttp.KeyConfigs
	if err := kcs.UnmarshalBinary(body); err != nil || len(kcs) != 1 {
		t.Fatalf("after the reload the gateway publishes %d keys (%v), want only key 2", len(kcs), err)
	}
	// A broken file is refused and the gateway goes on.
	os.WriteFile(cfgPath, []byte("{"), 0o600)
	g.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if err := roundTrip(c, "/after", "still serving", false); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
	if !strings.Contains(g.stderr.String(), "reload failed") {
		t.Errorf("the failed reload was not logged")
	}
}

// TestGatewayPluginKilledUnderLoad: the plugin process is killed while
// clients send; every request ends with a success or a retryable 5xx,
// none hangs, and the gateway serves again afterwards.
func TestGatewayPluginKilledUnderLoad(t *testing.T) {
	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	origin := newEchoOrigin(t)
	g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", origin.URL,
		"--metrics-listen", "127.0.0.1:0")
	c := ohttpClient(t, g.url)
	pids := g.pluginPIDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var ok, retryable atomic.Int64
	var bad atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := roundTrip(c, "/k", "during a crash", false)
				switch {
				case err == nil:
					ok.Add(1)
				case strings.Contains(err.Error(), "503") || strings.Contains(err.Error(), "status 5"):
					retryable.Add(1)
				default:
					bad.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err, _ := bad.Load().(error); err != nil {
		t.Errorf("a request failed with neither success nor a retryable 5xx: %v", err)
	}
	if err := roundTrip(c, "/after", "recovered", false); err != nil {
		t.Fatalf("after the crash: %v\n%s", err, g.stderr.String())
	}
	t.Logf("%d ok, %d retryable", ok.Load(), retryable.Load())
}

// TestGatewayGracefulShutdown: SIGTERM lets a request in flight finish.
func TestGatewayGracefulShutdown(t *testing.T) {
	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	origin := newEchoOrigin(t)
	g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", origin.URL)
	c := ohttpClient(t, g.url)
	errc := make(chan error, 1)
	go func() { errc <- roundTrip(c, "/slow", "slow one", false) }()
	time.Sleep(300 * time.Millisecond) // the request is at the origin
	g.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-errc; err != nil {
		t.Fatalf("the request in flight at SIGTERM: %v", err)
	}
	select {
	case err := <-g.done:
		g.done <- err
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	// The plugin is gone too.
	for _, pid := range g.pluginPIDs(t) {
		waitGone(t, pid)
	}
	if _, err := http.Get(g.url); err == nil {
		t.Error("still serving after SIGTERM")
	}
}
