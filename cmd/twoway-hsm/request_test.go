package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The request command's tests run it in this process against a real
// gateway.Handler on loopback HTTP, with soft keys in the process, in front
// of a real origin server.

// reqGateway is a gateway on loopback in front of an origin.
type reqGateway struct {
	srv        *httptest.Server
	keys       *twoway.Gateway
	gets, post atomic.Int32
}

// reqKeys returns a twoway.Gateway with fresh soft keys: X25519 as
// key id 1 and, with two, P-256 as key id 2.
func reqKeys(t *testing.T, two bool) *twoway.Gateway {
	t.Helper()
	g := twoway.NewGateway(nil)
	add := func(id byte, k kem.ID, s twoway.SymmetricSuite) {
		key, err := kem.GenerateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.AddKey(id, key, s); err != nil {
			t.Fatal(err)
		}
	}
	add(1, kem.DHKEMX25519HKDFSHA256, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM})
	if two {
		add(2, kem.DHKEMP256HKDFSHA256, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_ChaCha20Poly1305})
	}
	return g
}

// startReqGateway serves a gateway with keys around inner.
func startReqGateway(t *testing.T, keys *twoway.Gateway, inner http.Handler) *reqGateway {
	t.Helper()
	h, err := gateway.New(keys, inner, gateway.WithLogger(reqQuietLog()), gateway.WithHandlerTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	g := &reqGateway{keys: keys}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			g.gets.Add(1)
		} else {
			g.post.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	return g
}

func (g *reqGateway) start(t *testing.T) *reqGateway {
	g.srv.Start()
	t.Cleanup(g.srv.Close)
	return g
}

// reqProxy is the inner handler of a gateway that forwards to an origin.
func reqProxy(t *testing.T, origin http.Handler) http.Handler {
	t.Helper()
	o := httptest.NewServer(origin)
	t.Cleanup(o.Close)
	u, _ := url.Parse(o.URL)
	return &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(u); r.Out.Host = r.In.Host },
		FlushInterval: -1,
		ErrorHandler:  gateway.OriginErrorHandler,
	}
}

// reqEchoOrigin answers with what it was sent.
var reqEchoOrigin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Uri", r.RequestURI)
	w.Header().Set("X-Test", r.Header.Get("X-Test"))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.URL.Path == "/missing" {
		w.WriteHeader(http.StatusNotFound)
	}
	w.Write(body)
})

func reqQuietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// reqRun runs the request command in this process.
func reqRun(t *testing.T, stdin io.Reader, stdout io.Writer, args ...string) (int, string) {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var errOut bytes.Buffer
	e := &environment{stdin: stdin, stdinFd: -1, stdout: stdout, stderr: &errOut, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := dispatch(ctx, e, append([]string{"request"}, args...))
	return code, errOut.String()
}

// request runs the command and returns its exit status, stdout and stderr.
func reqCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out bytes.Buffer
	code, errOut := reqRun(t, nil, &out, args...)
	return code, out.String(), errOut
}

func reqJSON(t *testing.T, args ...string) requestView {
	t.Helper()
	code, out, errOut := reqCmd(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("request %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	var v requestView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	return v
}

func reqHeader(v requestView, name string) string {
	for _, f := range v.Headers {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func TestRequestRoundTrip(t *testing.T) {
	g := startReqGateway(t, reqKeys(t, false), reqProxy(t, reqEchoOrigin)).start(t)
	for _, chunked := range []bool{false, true} {
		extra := []string{}
		if chunked {
			extra = []string{"--chunked"}
		}
		// GET, content on stdout, the status line on stderr
		code, out, errOut := reqCmd(t, append(extra, "--gateway", g.srv.URL, "https://origin.example/a/b?c=d")...)
		if code != 0 || out != "" || strings.TrimSpace(errOut) != "200 OK" {
			t.Fatalf("chunked=%v GET: exit %d, stdout %q, stderr %q", chunked, code, out, errOut)
		}
		// POST with -d and -H, as JSON
		v := reqJSON(t, append(extra, "--gateway", g.srv.URL, "-d", "hello gateway", "-H", "X-Test: yes", "https://origin.example/post")...)
		if v.Status != 200 || v.Body == nil || *v.Body != "hello gateway" || v.BodyLen != 13 || reqHeader(v, "x-method") != "POST" ||
			reqHeader(v, "x-test") != "yes" || reqHeader(v, "x-uri") != "/post" || reqHeader(v, "x-host") != "origin.example" {
			t.Fatalf("chunked=%v POST: %+v", chunked, v)
		}
		if v.KeyID != 1 || v.KEM != "x25519" || v.KDF != "hkdf-sha256" || v.AEAD != "aes-128-gcm" || v.Chunked != chunked ||
			v.Gateway != g.srv.URL+gateway.DefaultPath || v.Timing.Total <= 0 || v.Timing.Total < v.Timing.Head || v.Timing.KeyConfig <= 0 {
			t.Fatalf("chunked=%v: %+v", chunked, v)
		}
		// -X, -i, a body from a file that is not UTF-8
		file := filepath.Join(t.TempDir(), "data")
		bin := []byte{0xff, 0xfe, 0, 1, 2}
		os.WriteFile(file, bin, 0o600)
		code, out, _ = reqCmd(t, append(extra, "--gateway", g.srv.URL, "-X", "PUT", "--data-file", file, "-i", "https://origin.example/put")...)
		head, content, _ := strings.Cut(out, "\n\n")
		if code != 0 || !strings.HasPrefix(head, "200 OK\n") || !strings.Contains(head, "\nx-method: PUT\n") || content != string(bin) {
			t.Fatalf("chunked=%v -i: exit %d, %q", chunked, code, out)
		}
		v = reqJSON(t, append(extra, "--gateway", g.srv.URL, "--data-file", file, "https://origin.example/put")...)
		if got, _ := base64.StdEncoding.DecodeString(v.BodyBase64); v.Body != nil || !bytes.Equal(got, bin) || reqHeader(v, "x-method") != "POST" {
			t.Fatalf("chunked=%v binary body: %+v", chunked, v)
		}
		// the origin's 404 is a response: exit 0, or 1 with --fail
		code, out, errOut = reqCmd(t, append(extra, "--gateway", g.srv.URL, "-d", "x", "https://origin.example/missing")...)
		if code != 0 || out != "x" || !strings.Contains(errOut, "404 Not Found") {
			t.Fatalf("chunked=%v 404: exit %d, %q, %q", chunked, code, out, errOut)
		}
		code, out, errOut = reqCmd(t, append(extra, "--gateway", g.srv.URL, "--fail", "-d", "x", "https://origin.example/missing")...)
		if code != 1 || out != "x" || !strings.Contains(errOut, "404 Not Found (--fail)") {
			t.Fatalf("chunked=%v --fail: exit %d, %q, %q", chunked, code, out, errOut)
		}
		code, out, _ = reqCmd(t, append(extra, "--gateway", g.srv.URL, "--fail", "--json", "https://origin.example/missing")...)
		var fv requestView
		if code != 1 || json.Unmarshal([]byte(out), &fv) != nil || fv.Status != 404 || !strings.Contains(fv.Error, "--fail") {
			t.Fatalf("chunked=%v --fail --json: exit %d, %q", chunked, code, out)
		}
	}
}

// TestRequestStreaming checks that --chunked streams both ways: the
// origin answers the first line of the request before the rest is sent,
// and the command prints that answer before the origin goes on.
func TestRequestStreaming(t *testing.T) {
	next := make(chan struct{})
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		br := bufio.NewReader(r.Body)
		line, err := br.ReadString('\n')
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		io.WriteString(w, "got "+line)
		w.(http.Flusher).Flush()
		rest, _ := io.ReadAll(br)
		select {
		case <-next:
		case <-time.After(10 * time.Second):
			io.WriteString(w, "the client did not see the first chunk\n")
		}
		io.WriteString(w, "then "+string(rest))
	})
	g := startReqGateway(t, reqKeys(t, false), reqProxy(t, origin)).start(t)
	pr, pw := io.Pipe()
	out := &reqWatchWriter{want: "got ping\n", seen: make(chan struct{})}
	go func() {
		pw.Write([]byte("ping\n"))
		select {
		case <-out.seen:
			pw.Write([]byte("bye\n"))
		case <-time.After(10 * time.Second):
			pw.Write([]byte("the client did not stream the response\n"))
		}
		pw.Close()
		close(next)
	}()
	code, errOut := reqRun(t, pr, out, "--gateway", g.srv.URL, "--chunked", "--data-file", "-", "https://origin.example/stream")
	if got := out.String(); code != 0 || got != "got ping\nthen bye\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, got, errOut)
	}
}

// reqWatchWriter signals when what it was written contains want.
type reqWatchWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *reqWatchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *reqWatchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestRequestTruncated: a chunked response that the gateway aborts is an
// error, after the content that arrived.
func TestRequestTruncated(t *testing.T) {
	g := startReqGateway(t, reqKeys(t, false), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})).start(t)
	code, out, errOut := reqCmd(t, "--gateway", g.srv.URL, "--chunked", "https://origin.example/")
	if code != 1 || out != "partial" || !strings.Contains(errOut, "the response ended early") || !strings.Contains(errOut, "incomplete") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestRequestKeyConfig(t *testing.T) {
	keys := reqKeys(t, true)
	g := startReqGateway(t, keys, reqProxy(t, reqEchoOrigin)).start(t)
	dir := t.TempDir()
	body, err := keys.MarshalKeyConfigs()
	if err != nil {
		t.Fatal(err)
	}
	pinned := filepath.Join(dir, "ohttp-keys")
	os.WriteFile(pinned, body, 0o644)

	// a pinned configuration: no GET
	g.gets.Store(0)
	v := reqJSON(t, "--gateway", g.srv.URL, "--key-config", pinned, "https://origin.example/")
	if v.Status != 200 || v.KeyID != 1 || g.gets.Load() != 0 || v.Timing.KeyConfig != 0 {
		t.Fatalf("--key-config: %+v, %d GETs", v, g.gets.Load())
	}
	// --key-id picks the second key, fetched or pinned
	for _, extra := range [][]string{nil, {"--key-config", pinned}} {
		v = reqJSON(t, append(extra, "--gateway", g.srv.URL, "--key-id", "2", "https://origin.example/")...)
		if v.Status != 200 || v.KeyID != 2 || v.KEM != "p256" || v.AEAD != "chacha20-poly1305" {
			t.Fatalf("--key-id 2 %q: %+v", extra, v)
		}
	}
	code, _, errOut := reqCmd(t, "--gateway", g.srv.URL, "--key-id", "9", "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "key id 9 is not in the key configuration (it has key ids 1, 2)") {
		t.Fatalf("--key-id 9: exit %d, %q", code, errOut)
	}

	// a configuration this client cannot use comes before a usable one
	mlkem, err := kem.GenerateKey(kem.MLKEM768)
	if err != nil {
		t.Fatal(err)
	}
	unusable, err := twoway.MarshalKeyConfigs([]twoway.KeyConfig{{KeyID: 7, KEM: hpke.KEM(kem.MLKEM768), PublicKey: mlkem.PublicKeyBytes(),
		Suites: []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}}}})
	if err != nil {
		t.Fatal(err)
	}
	mixed := filepath.Join(dir, "mixed")
	os.WriteFile(mixed, append(unusable, body...), 0o644)
	if v := reqJSON(t, "--gateway", g.srv.URL, "--key-config", mixed, "https://origin.example/"); v.KeyID != 1 {
		t.Fatalf("first usable: key id %d", v.KeyID)
	}
	only := filepath.Join(dir, "only")
	os.WriteFile(only, unusable, 0o644)
	code, _, errOut = reqCmd(t, "--gateway", g.srv.URL, "--key-config", only, "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "no key configuration this tool can use: key id 7: this client cannot encapsulate to ML-KEM-768") {
		t.Fatalf("unusable: exit %d, %q", code, errOut)
	}

	// files that are not key configurations
	hexFile := filepath.Join(dir, "hex")
	os.WriteFile(hexFile, []byte("0020abcdef\n"), 0o644)
	code, _, errOut = reqCmd(t, "--gateway", g.srv.URL, "--key-config", hexFile, "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "--key-config "+hexFile) || !strings.Contains(errOut, "looks like hex or base64") {
		t.Fatalf("hex file: exit %d, %q", code, errOut)
	}
	code, _, errOut = reqCmd(t, "--gateway", g.srv.URL, "--key-config", filepath.Join(dir, "absent"), "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("absent file: exit %d, %q", code, errOut)
	}
}

// TestRequestOuterErrors: errors before decapsulation are reported with
// their problem details and what to do.
func TestRequestOuterErrors(t *testing.T) {
	g := startReqGateway(t, reqKeys(t, false), reqProxy(t, reqEchoOrigin)).start(t)
	dir := t.TempDir()
	write := func(name string, keys *twoway.Gateway) string {
		b, err := keys.MarshalKeyConfigs()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	// another gateway's key under the same key id: it does not decrypt
	stale := write("stale", reqKeys(t, false))
	code, out, errOut := reqCmd(t, "--gateway", g.srv.URL, "--key-config", stale, "--json", "https://origin.example/")
	var f failureJSON
	if code != 1 || json.Unmarshal([]byte(out), &f) != nil || !strings.Contains(f.Error, "answered 400 Bad Request: request cannot be decrypted") ||
		!strings.Contains(f.Error, "[ohttp-key]") || !strings.Contains(f.Hint, "pinned key configuration") ||
		!strings.Contains(errOut, "hint: the gateway does not accept the pinned key configuration") {
		t.Fatalf("stale key: exit %d, %q, %q", code, out, errOut)
	}
	// a key id the gateway does not have
	other := twoway.NewGateway(nil)
	k, _ := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	other.AddKey(9, k, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM})
	code, _, errOut = reqCmd(t, "--gateway", g.srv.URL, "--key-config", write("unknown", other), "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "the gateway at "+g.srv.URL+gateway.DefaultPath+" answered 400 Bad Request: key identifier unknown") ||
		!strings.Contains(errOut, "hint: the gateway does not accept") {
		t.Fatalf("unknown key: exit %d, %q", code, errOut)
	}
	// a URL that is not the gateway's
	code, _, errOut = reqCmd(t, "--gateway", g.srv.URL+"/nope", "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "answered 404 Not Found: not found: this gateway serves") || !strings.Contains(errOut, "hint: is this the URL of an OHTTP gateway") {
		t.Fatalf("404: exit %d, %q", code, errOut)
	}
	// a server that is no gateway
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello</html>") }))
	defer web.Close()
	code, _, errOut = reqCmd(t, "--gateway", web.URL, "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "answered with text/html; charset=utf-8, not application/ohttp-keys") {
		t.Fatalf("not a gateway: exit %d, %q", code, errOut)
	}
	// nothing listening
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	code, _, errOut = reqCmd(t, "--gateway", "http://"+addr, "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "fetch the key configuration") || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("refused: exit %d, %q", code, errOut)
	}
	// the origin is down: the gateway's encapsulated 502 is a response
	down := startReqGateway(t, reqKeys(t, false), &httputil.ReverseProxy{
		Rewrite:      func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: addr}) },
		ErrorHandler: gateway.OriginErrorHandler,
	}).start(t)
	code, _, errOut = reqCmd(t, "--gateway", down.srv.URL, "https://origin.example/")
	if code != 0 || !strings.Contains(errOut, "502 Bad Gateway") {
		t.Fatalf("origin down: exit %d, %q", code, errOut)
	}
}

// TestRequestRelay sends through a relay, which forwards to the gateway.
func TestRequestRelay(t *testing.T) {
	g := startReqGateway(t, reqKeys(t, false), reqProxy(t, reqEchoOrigin)).start(t)
	gu, _ := url.Parse(g.srv.URL)
	var relayed atomic.Int32
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(gu)
		r.Out.URL.Path = gateway.DefaultPath
	}, FlushInterval: -1}
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		relayed.Add(1)
		rp.ServeHTTP(w, r)
	}))
	defer relay.Close()
	g.post.Store(0)
	for _, chunked := range []string{"--chunked=false", "--chunked"} {
		v := reqJSON(t, "--gateway", g.srv.URL, "--relay", relay.URL+"/relay", chunked, "-d", "via relay", "https://origin.example/")
		if v.Status != 200 || *v.Body != "via relay" || v.Relay != relay.URL+"/relay" {
			t.Fatalf("%s: %+v", chunked, v)
		}
	}
	if relayed.Load() != 2 || g.post.Load() != 2 {
		t.Fatalf("relayed %d, gateway got %d POSTs", relayed.Load(), g.post.Load())
	}
	// --relay with a pinned key configuration needs no --gateway
	body, _ := g.keys.MarshalKeyConfigs()
	pinned := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(pinned, body, 0o644)
	v := reqJSON(t, "--relay", relay.URL+"/relay", "--key-config", pinned, "https://origin.example/")
	if v.Status != 200 || v.Gateway != "" {
		t.Fatalf("relay only: %+v", v)
	}
	// the relay's own error names the relay
	code, _, errOut := reqCmd(t, "--gateway", g.srv.URL, "--relay", g.srv.URL+"/not-a-relay", "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "the relay at "+g.srv.URL+"/not-a-relay answered 404") {
		t.Fatalf("relay error: exit %d, %q", code, errOut)
	}
}

// TestRequestMutualTLS reaches a gateway that requires a client
// certificate.
func TestRequestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPEM := reqNewCA(t)
	os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o644)
	serverCert := reqIssue(t, ca, caKey, "gateway", x509.ExtKeyUsageServerAuth, dir, "server")
	reqIssue(t, ca, caKey, "relay", x509.ExtKeyUsageClientAuth, dir, "client")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	g := startReqGateway(t, reqKeys(t, false), reqProxy(t, reqEchoOrigin))
	g.srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	g.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes refused on purpose
	g.srv.StartTLS()
	defer g.srv.Close()

	ok := []string{"--gateway", g.srv.URL, "--ca-cert", filepath.Join(dir, "ca.pem"),
		"--client-cert", filepath.Join(dir, "client.pem"), "--client-key", filepath.Join(dir, "client.key")}
	for _, chunked := range []string{"--chunked=false", "--chunked"} {
		if v := reqJSON(t, append(ok, chunked, "-d", "tls", "https://origin.example/")...); v.Status != 200 || *v.Body != "tls" {
			t.Fatalf("mTLS %s: %+v", chunked, v)
		}
	}
	code, _, errOut := reqCmd(t, "--gateway", g.srv.URL, "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "hint: the server's certificate is not trusted here: give its CA with --ca-cert") {
		t.Fatalf("untrusted: exit %d, %q", code, errOut)
	}
	code, _, errOut = reqCmd(t, "--gateway", g.srv.URL, "--ca-cert", filepath.Join(dir, "ca.pem"), "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "hint: the server requires a client certificate") {
		t.Fatalf("no client certificate: exit %d, %q", code, errOut)
	}
	code, _, errOut = reqCmd(t, "--gateway", g.srv.URL, "--ca-cert", filepath.Join(dir, "client.key"), "https://origin.example/")
	if code != 1 || !strings.Contains(errOut, "no PEM certificate") {
		t.Fatalf("bad --ca-cert: exit %d, %q", code, errOut)
	}
}

func reqNewCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// reqIssue makes a certificate for 127.0.0.1 and writes NAME.pem and
// NAME.key to dir.
func reqIssue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage, dir, name string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
	os.WriteFile(filepath.Join(dir, name+".pem"), certPEM, 0o644)
	os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRequestUsage(t *testing.T) {
	const gw = "http://127.0.0.1:1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--gateway", gw}, "missing TARGET-URL"},
		{[]string{"https://origin.example/"}, "no --gateway URL given"},
		{[]string{"--relay", gw, "https://origin.example/"}, "--relay without --gateway needs --key-config"},
		{[]string{"--gateway", gw, "https://origin.example/", "extra"}, `unexpected argument "extra"`},
		{[]string{"--gateway", "ftp://gw.example", "https://origin.example/"}, "--gateway \"ftp://gw.example\": want an http or https URL"},
		{[]string{"--gateway", "http://user:secret@gw.example", "relative"}, "TARGET-URL \"relative\""},
		{[]string{"--gateway", gw, "https://user:pw@origin.example/"}, "user information"},
		{[]string{"--gateway", gw, "--key-id", "256", "https://origin.example/"}, "--key-id 256"},
		{[]string{"--gateway", gw, "-d", "x", "--data-file", "f", "https://origin.example/"}, "not both"},
		{[]string{"--gateway", gw, "-H", "no colon", "https://origin.example/"}, "want 'Name: value'"},
		{[]string{"--gateway", gw, "-H", "Bad Name: x", "https://origin.example/"}, "want 'Name: value'"},
		{[]string{"--gateway", gw, "-X", "GE T", "https://origin.example/"}, "not an HTTP method"},
		{[]string{"--gateway", gw, "--client-cert", "c.pem", "https://origin.example/"}, "--client-cert and --client-key go together"},
		{[]string{"--gateway", gw, "--timeout", "-1s", "https://origin.example/"}, "negative"},
		{[]string{"--gateway", gw, "--bogus", "https://origin.example/"}, "flag provided but not defined"},
	} {
		code, out, errOut := reqCmd(t, tc.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "see 'twoway-hsm request -h'") {
			t.Errorf("request %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.want)
		}
		if strings.Contains(errOut, "secret") {
			t.Errorf("request %q: the password is in the message: %q", tc.args, errOut)
		}
	}
	// --json makes the usage failure a document too
	code, out, _ := reqCmd(t, "--json", "--gateway", gw)
	var f failureJSON
	if code != exitUsage || json.Unmarshal([]byte(out), &f) != nil || !f.Usage || !strings.Contains(f.Error, "missing TARGET-URL") {
		t.Errorf("--json usage: exit %d, %q", code, out)
	}
	if code, out, _ := reqCmd(t, "-h"); code != 0 || !strings.Contains(out, "Usage: twoway-hsm request") || !strings.Contains(out, "--key-config") {
		t.Errorf("-h: exit %d, %q", code, out)
	}
}
