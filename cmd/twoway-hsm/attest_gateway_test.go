package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/attest/attesthttp"
	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// TestGatewayEvidence: the operator's two commands (keys create, gateway)
// and the client's one (attest verify --gateway): the gateway serves the
// evidence of its TPM key through its plugin, which verifies, with
// credential activation through the gateway; a soft key is reported not
// attestable and makes the verification fail; fresh evidence is
// rate-limited (429 with Retry-After); a bad challenge gets 400 saying
// why.
func TestGatewayEvidence(t *testing.T) {
	caDir := t.TempDir()
	sw := testenv.StartSWTPM(t, testenv.SWTPMEKCert(caDir))
	root, issuer := sw.EKRoot()
	dir := t.TempDir()
	tref := createKey(t, nil, "tpm2:file="+filepath.Join(dir, "gw.pem")+"?tpm="+sw.Transport(), "p256")
	sref := createKey(t, nil, "soft:file="+filepath.Join(dir, "soft.pem"), "x25519")
	origin := newEchoOrigin(t)

	g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+tref, "--target", origin.URL)
	verify := []string{"attest", "verify", "--gateway", g.url, "--roots", root, "--intermediates", issuer}
	r := mustRun(t, nil, verify...)
	for _, want := range []string{"key id:         1", "KEM:            p256", "issuer CN=swtpm-localca", "one of the published configurations (the gateway's, fetched)",
		"(the one this command sent: fresh)", "generated in the TPM", "AK-EK binding:  verified by credential activation with the gateway", "verified:       yes"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("attest verify --gateway output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustRun(t, nil, append(verify, "--json")...)
	var v gatewayVerifyView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || !v.Verified || len(v.Keys) != 1 || v.Keys[0].Evidence == nil ||
		v.Keys[0].Evidence.Binding != "verified" || !v.Keys[0].Evidence.Verified {
		t.Fatalf("--json: %v %s", err, r.stdout)
	}
	// The package a client uses, against the gateway and its plugin.
	roots, intermediates := sw.EKPools()
	res, err := attesthttp.Verify(context.Background(), nil, g.url, attest.Options{Roots: roots, Intermediates: intermediates})
	if err != nil || !res.Attested() || len(res.Keys) != 1 || !res.Keys[0].Activated || res.Keys[0].Result.KeyID() != 1 {
		t.Fatalf("attesthttp.Verify through the gateway's plugin: %v %+v", err, res)
	}
	// Without the issuing CA the client cannot build the EK certificate's
	// chain; the gateway's --ek-chain serves it with the evidence.
	runFail(t, nil, exitFailure, "EK certificate not trusted", "attest", "verify", "--gateway", g.url, "--roots", root)
	g.stop(t)
	g = startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+tref, "--target", origin.URL, "--ek-chain", issuer)
	if r := mustRun(t, nil, "attest", "verify", "--gateway", g.url, "--roots", root); !strings.Contains(r.stdout, "verified:       yes") {
		t.Errorf("attest verify --gateway, the issuer from the gateway's --ek-chain:\n%s", r.stdout)
	}
	// A wrong root.
	stranger := testenv.StartSWTPM(t, testenv.SWTPMEKCert(""))
	sroot, _ := stranger.EKRoot()
	runFail(t, nil, exitFailure, "EK certificate not trusted", "attest", "verify", "--gateway", g.url, "--roots", sroot)
	// Usage.
	runFail(t, nil, exitUsage, "not both", append(verify, "x.json")...)
	runFail(t, nil, exitUsage, "do not apply", append(verify, "--nonce", "00")...)
	runFail(t, nil, exitUsage, "missing --roots", "attest", "verify", "--gateway", g.url)
	runFail(t, nil, exitUsage, "are for --gateway", "attest", "verify", "x.json", "--roots", root, "--ca-cert", root)
	runFail(t, nil, exitUsage, "--client-cert and --client-key go together", append(verify, "--client-cert", root)...)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	runFail(t, nil, exitFailure, "no PEM certificate", append(verify, "--ca-cert", junk)...)
	g.stop(t) // swtpm serves one connection: the next gateway's plugin takes it

	// A TPM key and a soft key.
	g = startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+tref, "--key", "2="+sref, "--target", origin.URL,
		"--evidence-rate", "0.05", "--evidence-burst", "3")
	verify = []string{"attest", "verify", "--gateway", g.url, "--roots", root, "--intermediates", issuer}
	r = runFail(t, nil, exitFailure, "evidence NOT verified for every key", verify...)
	for _, want := range []string{"key id:         2", "verified:       NO, not attestable", "software key", "verified:       yes"} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("attest verify --gateway with a soft key lacks %q:\n%s\n%s", want, r.stdout, r.stderr)
		}
	}
	resp, err := http.Get(g.url + gateway.EvidenceSuffix)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	set, err := attest.ParseEvidenceSet(body)
	if err != nil || len(set.Keys) != 2 || set.Keys[0].Evidence == nil || !set.Keys[1].NotAttestable {
		t.Fatalf("GET evidence: %v %s", err, body)
	}
	// Clients learn why, not where the gateway keeps its keys.
	if p := set.Keys[1].Problem; p != "a soft key: a software key is in the plugin's memory, not in hardware" || strings.Contains(string(body), dir) {
		t.Errorf("the soft key's problem: %q; body %s", p, body)
	}

	// A bad challenge.
	resp, err = http.Post(g.url+gateway.ActivateSuffix, "application/json", strings.NewReader(`{"version":1,"ek_public":"not base64!"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "bad base64") {
		t.Errorf("a bad challenge: %s %s", resp.Status, body)
	}

	// The rate limit, --evidence-burst 3 and --evidence-rate 0.05 (one in
	// 20 s): the verification above took two tokens, so one more request
	// gets fresh evidence and the others are told to come back in 20 s.
	limited := 0
	for range 6 {
		resp, err := http.Get(g.url + gateway.EvidenceSuffix + "?nonce=0011223344556677")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
		case http.StatusTooManyRequests:
			if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 15 || ra > 20 {
				t.Errorf("429 with Retry-After %q; want about 20 s (--evidence-rate 0.05)", resp.Header.Get("Retry-After"))
			}
			limited++
		default:
			t.Fatalf("fresh evidence: %s", resp.Status)
		}
	}
	if limited != 5 {
		t.Errorf("%d of 6 requests for fresh evidence rate-limited; want 5 (--evidence-burst 3, two taken)", limited)
	}
	g.stop(t)
	if logs := g.stderr.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("the gateway logged errors:\n%s", logs)
	}
}

// TestAttestVerifyGatewayWithoutPath: as for request and key-config
// --merge, a --gateway URL without a path means the gateway's
// /.well-known/ohttp-gateway. The gateway's soft key is reported not
// attestable (not a 404): the command reached the gateway's endpoints.
func TestAttestVerifyGatewayWithoutPath(t *testing.T) {
	t.Parallel()
	key := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	origin := newEchoOrigin(t)
	g := startGateway(t, nil, "--listen", "127.0.0.1:0", "--key", "1="+key, "--target", origin.URL)
	_, _, rootPEM := reqNewCA(t)
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"http://" + g.addr, "http://" + g.addr + "/"} {
		r := runFail(t, nil, exitFailure, "not attestable", "attest", "verify", "--gateway", u, "--roots", roots)
		if want := "gateway:        " + g.url + "\n"; !strings.Contains(r.stdout+r.stderr, want) || strings.Contains(r.stderr, "404") {
			t.Errorf("attest verify --gateway %s: want %q and no 404\nstdout: %s\nstderr: %s", u, want, r.stdout, r.stderr)
		}
	}
	runFail(t, nil, exitUsage, "want an http or https URL", "attest", "verify", "--gateway", "gw.example", "--roots", roots)
}
