package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openpcc/ohttp"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// Scaling out twoway-hsm gateway (issue 12, "Scale beyond one machine"):
// gateways keep no per-client state, so N of them serve behind any load
// balancer, with one HSM key shared by all of them, or with one TPM key
// per machine, published in one merged list and routed by key id.

// scaleRoundRobin is a load balancer in front of gateways: each outer
// request goes to the next backend in turn, whatever URL the client
// named.
type scaleRoundRobin struct {
	backends []string // host:port
	next     atomic.Uint64
	sent     []atomic.Int64
	base     http.RoundTripper
}

func newScaleRoundRobin(backends ...string) *scaleRoundRobin {
	return &scaleRoundRobin{backends: backends, sent: make([]atomic.Int64, len(backends)),
		base: &http.Transport{MaxIdleConnsPerHost: 16}}
}

func (rr *scaleRoundRobin) RoundTrip(r *http.Request) (*http.Response, error) {
	i := int((rr.next.Add(1) - 1) % uint64(len(rr.backends)))
	out := r.Clone(r.Context())
	out.URL.Host, out.Host = rr.backends[i], ""
	rr.sent[i].Add(1)
	return rr.base.RoundTrip(out)
}

// TestGatewayScaleOutOneHSMKey: three gateway processes whose plugins
// share one SoftHSM token directory serve one key made with keys create.
// They publish byte-identical key configurations (and ETags), and a
// client that fetched the configuration from the first one is served by
// all three, round-robin, unchunked and chunked, under concurrency; each
// gateway's metrics count exactly the requests it was sent.
func TestGatewayScaleOutOneHSMKey(t *testing.T) {
	tok := testenv.SoftHSM(t)
	env := tok.Environ()
	ref := createKey(t, env, tok.URI("id=%01", "object=shared"), "p256")
	origin := newEchoOrigin(t)
	var gws []*runningGateway
	for range 3 {
		gws = append(gws, startGateway(t, env, "--listen", "127.0.0.1:0", "--key", "1="+ref, "--target", origin.URL,
			"--metrics-listen", "127.0.0.1:0"))
	}
	// Three plugin processes, one per gateway, on the one token.
	var pids []int
	for _, g := range gws {
		g.servingRecord(t)
		pids = append(pids, g.pluginPIDs(t)...)
	}
	slices.Sort(pids)
	if len(slices.Compact(pids)) != 3 {
		t.Fatalf("plugin processes %v; want three, one per gateway", pids)
	}

	body1, kcs, resp1 := opsKeys(t, opsPlain, gws[0].url)
	for i, g := range gws[1:] {
		body, _, resp := opsKeys(t, opsPlain, g.url)
		if !bytes.Equal(body, body1) || resp.Header.Get("ETag") != resp1.Header.Get("ETag") {
			t.Fatalf("gateway %d publishes %x (ETag %s); gateway 1 %x (ETag %s)", i+2, body, resp.Header.Get("ETag"), body1, resp1.Header.Get("ETag"))
		}
	}
	if ids := opsKeyIDs(kcs); !bytes.Equal(ids, []byte{1}) {
		t.Fatalf("published key ids %v; want [1]", ids)
	}

	var addrs []string
	for _, g := range gws {
		addrs = append(addrs, g.addr)
	}
	lb := newScaleRoundRobin(addrs...)
	c := opsClient(t, kcs[0], gws[0].url, &http.Client{Transport: lb, Timeout: 15 * time.Second})
	// In turn: every gateway gets an unchunked and a chunked request.
	for i := range 6 {
		if err := roundTrip(c, "/turn", fmt.Sprintf("request %d", i), i%2 == 1); err != nil {
			t.Fatalf("request %d (gateway %d, chunked %v): %v\n%s", i, i%3+1, i%2 == 1, err, gws[i%3].stderr.String())
		}
	}
	// Under concurrency for a bounded time.
	var ok atomic.Int64
	var failed atomic.Value
	opsLoad(t, 6, 2*time.Second, func(w, i int) {
		payload := strings.Repeat("x", 100+(w*37+i*101)%5000)
		if err := roundTrip(c, "/load", payload, (w+i)%2 == 0); err != nil {
			failed.CompareAndSwap(nil, err)
		} else {
			ok.Add(1)
		}
	})
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("under load: %d ok, a failure: %v", ok.Load(), err)
	}
	for i, g := range gws {
		sent := float64(lb.sent[i].Load())
		m := opsScrape(t, g.metricsAddress(t))
		if sent < 10 || m[`twoway_gateway_requests_total{outcome="ok"}`] != sent || m[`twoway_gateway_key_uses_total{key_id="1"}`] != sent {
			t.Errorf("gateway %d: sent %v requests, counted %v ok and %v uses of key 1", i+1, sent,
				m[`twoway_gateway_requests_total{outcome="ok"}`], m[`twoway_gateway_key_uses_total{key_id="1"}`])
		}
		if code, body := opsStatus("http://" + g.addr + "/readyz"); code != 200 {
			t.Errorf("gateway %d /readyz: %d %q", i+1, code, body)
		}
	}
	t.Logf("%d requests under load, sent %d/%d/%d", ok.Load(), lb.sent[0].Load(), lb.sent[1].Load(), lb.sent[2].Load())
}

// TestGatewayTPMKeyPerMachine: two machines, each with its own TPM and
// its own key id. key-config --merge gives one list with both keys; a
// request sealed to one machine's key that reaches the other gets the
// outer #ohttp-key error (so the client refetches), and succeeds at its
// own machine; a relay that routes by key id (the first byte of the body)
// serves a client of the merged list with either key.
func TestGatewayTPMKeyPerMachine(t *testing.T) {
	t.Parallel()
	swA := testenv.StartSWTPM(t, testenv.SWTPMUnixSocket())
	swB := testenv.StartSWTPM(t, testenv.SWTPMUnixSocket())
	dir := t.TempDir()
	refA := createKey(t, nil, "tpm2:file="+filepath.Join(dir, "a.pem")+"?tpm="+swA.Transport(), "p256")
	refB := createKey(t, nil, "tpm2:file="+filepath.Join(dir, "b.pem")+"?tpm="+swB.Transport(), "p256")
	origin := newEchoOrigin(t)
	gA := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+refA, "--target", origin.URL)
	gB := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "2="+refB, "--target", origin.URL)
	bodyA, kcsA, _ := opsKeys(t, opsPlain, gA.url)
	bodyB, kcsB, _ := opsKeys(t, opsPlain, gB.url)
	if !bytes.Equal(opsKeyIDs(kcsA), []byte{1}) || !bytes.Equal(opsKeyIDs(kcsB), []byte{2}) {
		t.Fatalf("gateway A publishes key ids %v, B %v; want [1] and [2]", opsKeyIDs(kcsA), opsKeyIDs(kcsB))
	}

	// One list for every client: A's configuration, then B's.
	r := mustRun(t, nil, "key-config", "--merge", gA.url, "--merge", gB.url, "--format", "binary")
	if want := append(slices.Clone(bodyA), bodyB...); r.stdout != string(want) {
		t.Fatalf("key-config --merge: %x; want A's then B's configuration %x", r.stdout, want)
	}
	var merged ohttp.KeyConfigs
	if err := merged.UnmarshalBinary([]byte(r.stdout)); err != nil || !bytes.Equal(opsKeyIDs(merged), []byte{1, 2}) {
		t.Fatalf("the merged list: %v, key ids %v; want [1 2]", err, opsKeyIDs(merged))
	}
	kc1, kc2 := merged[0], merged[1]

	// Mis-routed: the key error, at both machines.
	if err := opsKeyProblem(opsPostSealed(t, opsPlain, kc2, gA.url)); err != nil {
		t.Errorf("key 2 sent to gateway A: %v", err)
	}
	if err := opsKeyProblem(opsPostSealed(t, opsPlain, kc1, gB.url)); err != nil {
		t.Errorf("key 1 sent to gateway B: %v", err)
	}
	// Routed right: served, unchunked and chunked.
	for _, tc := range []struct {
		name string
		kc   ohttp.KeyConfig
		g    *runningGateway
	}{{"key 1 at A", kc1, gA}, {"key 2 at B", kc2, gB}} {
		c := opsClient(t, tc.kc, tc.g.url, nil)
		for _, chunked := range []bool{false, true} {
			if err := roundTrip(c, "/own-machine", "on the machine with the key", chunked); err != nil {
				t.Errorf("%s, chunked %v: %v\n%s", tc.name, chunked, err, tc.g.stderr.String())
			}
		}
	}

	// A relay that routes by key id, in front of both.
	proxies := map[byte]*httputil.ReverseProxy{}
	for id, g := range map[byte]*runningGateway{1: gA, 2: gB} {
		u, _ := url.Parse("http://" + g.addr)
		p := httputil.NewSingleHostReverseProxy(u)
		p.FlushInterval = -1
		proxies[id] = p
	}
	var routed [3]atomic.Int64
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		br := bufio.NewReader(r.Body)
		first, err := br.Peek(1)
		p := proxies[1]
		if err == nil && proxies[first[0]] != nil {
			p = proxies[first[0]]
			routed[first[0]].Add(1)
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{br, r.Body}
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(relay.Close)
	for _, kc := range merged {
		c := opsClient(t, kc, relay.URL+gateway.DefaultPath, nil)
		for _, chunked := range []bool{false, true} {
			if err := roundTrip(c, "/via-relay", "routed by key id", chunked); err != nil {
				t.Errorf("key %d through the routing relay, chunked %v: %v", kc.KeyID, chunked, err)
			}
		}
	}
	if routed[1].Load() != 2 || routed[2].Load() != 2 {
		t.Errorf("the relay routed %d requests to A and %d to B; want 2 and 2", routed[1].Load(), routed[2].Load())
	}
}
