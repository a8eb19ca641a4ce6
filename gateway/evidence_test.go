package gateway_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/attest/attesthttp"
	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	_ "github.com/twoway-hsm/twoway-hsm/keystore/all"
	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// tpmEvidenceEnv is a gateway with a TPM key (id 1, in an swtpm
// manufactured with EK certificates) and a soft key (id 2), serving the
// evidence handler next to the gateway handler.
type tpmEvidenceEnv struct {
	srv   *httptest.Server
	url   string // the gateway path
	keys  *twoway.Gateway
	ev    *gateway.EvidenceHandler
	opts  attest.Options
	other *testenv.SWTPM // a second TPM, same maker
	tpm   keystore.Key
}

// openStoreKey creates and opens a key through the key store.
func openStoreKey(t testing.TB, ref string) keystore.Key {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := keystore.For(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, ref, kem.DHKEMP256HKDFSHA256, nil); err != nil {
		t.Fatalf("create %s: %v", ref, err)
	}
	k, err := st.Open(ctx, ref, nil)
	if err != nil {
		t.Fatalf("open %s: %v", ref, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// notAttestable is the soft key's attester: what the plugin answers for
// it.
type notAttestable struct{ k keystore.Key }

func (n notAttestable) Attest(context.Context, twoway.KeyConfig, []byte) (*attest.Evidence, error) {
	_, err := keystore.AttesterOf(n.k, "soft")
	return nil, err
}

func (n notAttestable) Activate(context.Context, *attest.Challenge) (*attest.Answer, error) {
	_, err := keystore.AttesterOf(n.k, "soft")
	return nil, err
}

func startEvidence(t *testing.T, withSoft bool, opts ...gateway.EvidenceOption) *tpmEvidenceEnv {
	t.Helper()
	caDir := t.TempDir()
	sw := testenv.StartSWTPM(t, testenv.SWTPMEKCert(caDir))
	other := testenv.StartSWTPM(t, testenv.SWTPMEKCert(caDir))
	roots, intermediates := sw.EKPools()
	dir := t.TempDir()
	tk := openStoreKey(t, "tpm2:file="+filepath.Join(dir, "gw.pem")+"?tpm="+sw.Transport())
	keys := twoway.NewGateway(nil)
	if err := keys.AddKey(1, tk, testSuite); err != nil {
		t.Fatal(err)
	}
	a, ok := tk.(gateway.Attester)
	if !ok {
		t.Fatalf("a TPM key from the key store is a %T, not an Attester", tk)
	}
	attesters := map[byte]gateway.Attester{1: a}
	if withSoft {
		sk := openStoreKey(t, "soft:file="+filepath.Join(dir, "soft.pem"))
		if err := keys.AddKey(2, sk, testSuite); err != nil {
			t.Fatal(err)
		}
		attesters[2] = notAttestable{sk}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eh, err := gateway.NewEvidenceHandler(ctx, keys, attesters, opts...)
	if err != nil {
		t.Fatal(err)
	}
	gh, err := gateway.New(keys, http.NotFoundHandler(), gateway.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if eh.Handles(r.URL.Path) {
			eh.ServeHTTP(w, r)
			return
		}
		gh.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &tpmEvidenceEnv{srv: srv, url: srv.URL + gateway.DefaultPath, keys: keys, ev: eh, other: other, tpm: tk,
		opts: attest.Options{Roots: roots, Intermediates: intermediates}}
}

func getEvidence(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestEvidenceTPM: the gateway serves cached and fresh evidence for its
// TPM key, which verifies with package attest and through attesthttp with
// credential activation through the gateway; the soft key is reported
// not attestable with its reason; a stale or wrong nonce is refused.
func TestEvidenceTPM(t *testing.T) {
	e := startEvidence(t, true, gateway.WithEvidenceLimiter(rate.NewLimiter(100, 100)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The cached container: made for no nonce.
	resp, body := getEvidence(t, e.url+gateway.EvidenceSuffix)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != attest.EvidenceSetMediaType {
		t.Fatalf("GET evidence: %s %q %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	set, err := attest.ParseEvidenceSet(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 || set.Keys[0].KeyID != 1 || set.Keys[0].Evidence == nil || set.Keys[1].KeyID != 2 {
		t.Fatalf("entries: %+v", set.Keys)
	}
	soft := set.Keys[1]
	if soft.Evidence != nil || !soft.NotAttestable || soft.Problem != "a soft key: a software key is in the plugin's memory, not in hardware" || !errors.Is(soft.Err(), attest.ErrNotAttestable) {
		t.Errorf("the soft key's entry: %+v", soft)
	}
	published := e.keys.KeyConfigs()
	opts := e.opts
	opts.KeyConfigs = published
	r, err := attest.Verify(set.Keys[0].Evidence, opts)
	if err != nil {
		t.Fatalf("the cached evidence does not verify: %v", err)
	}
	if r.KeyID() != 1 || !r.KeyConfigPublished || r.Imported {
		t.Errorf("result: %+v", r)
	}
	// Stale: the cached evidence is for no nonce, not the client's.
	opts.Nonce = []byte("client nonce")
	if _, err := attest.Verify(set.Keys[0].Evidence, opts); !errors.Is(err, attest.ErrNonce) {
		t.Errorf("cached evidence checked against a nonce: %v, want ErrNonce", err)
	}

	// Fresh evidence for a nonce; refused for another.
	nonce := []byte("0123456789abcdef")
	resp, body = getEvidence(t, e.url+gateway.EvidenceSuffix+"?nonce="+hex.EncodeToString(nonce))
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET evidence?nonce: %s %s", resp.Status, body)
	}
	fresh, err := attest.ParseEvidenceSet(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh.Nonce, nonce) || fresh.Keys[0].Evidence == nil {
		t.Fatalf("fresh set: %+v", fresh)
	}
	opts.Nonce = nonce
	if _, err := attest.Verify(fresh.Keys[0].Evidence, opts); err != nil {
		t.Errorf("fresh evidence: %v", err)
	}
	opts.Nonce = []byte("fedcba9876543210")
	if _, err := attest.Verify(fresh.Keys[0].Evidence, opts); !errors.Is(err, attest.ErrNonce) {
		t.Errorf("fresh evidence checked against another nonce: %v, want ErrNonce", err)
	}

	// Activation through the gateway.
	ch, secret, err := attest.MakeChallenge(fresh.Keys[0].Evidence)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := json.Marshal(ch)
	resp, body = postChallenge(t, e.url, "application/json", cb)
	if resp.StatusCode != 200 {
		t.Fatalf("activate: %s %s", resp.Status, body)
	}
	ans, err := attest.ParseAnswer(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := attest.CheckActivation(secret, ans); err != nil {
		t.Fatalf("activation through the gateway: %v", err)
	}

	// The client package: the soft key makes it fail, naming it; the
	// TPM key is attested and activated.
	res, err := attesthttp.Verify(ctx, nil, e.url, e.opts)
	if err == nil || !errors.Is(err, attest.ErrNotAttestable) || !strings.Contains(err.Error(), "key id 2") {
		t.Fatalf("attesthttp.Verify with a soft key: %v", err)
	}
	if res == nil || len(res.Keys) != 2 || res.Keys[0].Err != nil || !res.Keys[0].Activated || res.Keys[0].Result == nil || res.Attested() {
		t.Fatalf("attesthttp result: %+v", res)
	}
	// Without the soft key published, every key is attested.
	e.keys.SetPublished(2, false)
	res, err = attesthttp.Verify(ctx, nil, e.url, e.opts)
	if err != nil || !res.Attested() || len(res.Keys) != 1 {
		t.Fatalf("attesthttp.Verify, TPM key only: %v %+v", err, res)
	}
	// A wrong root.
	stranger := testenv.StartSWTPM(t, testenv.SWTPMEKCert(""))
	sroots, _ := stranger.EKPools()
	if _, err := attesthttp.Verify(ctx, nil, e.url, attest.Options{Roots: sroots}); !errors.Is(err, attest.ErrEKCertificate) {
		t.Errorf("a wrong root: %v", err)
	}
}

func postChallenge(t *testing.T, gwURL, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(gwURL+gateway.ActivateSuffix, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestEvidenceBadInput: bad nonces, bad challenge bodies and a challenge
// for another TPM get 400 (or 413, 415, 405) with a problem saying what
// was wrong; nothing reaches the TPM for them.
func TestEvidenceBadInput(t *testing.T) {
	e := startEvidence(t, false)
	_, body := getEvidence(t, e.url+gateway.EvidenceSuffix)
	set, err := attest.ParseEvidenceSet(body)
	if err != nil {
		t.Fatal(err)
	}
	ev := set.Keys[0].Evidence
	ch, _, err := attest.MakeChallenge(ev)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(ch)

	// A challenge for another TPM's EK (same maker, so it would verify).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	otherKey := openStoreKey(t, "tpm2:file="+filepath.Join(t.TempDir(), "o.pem")+"?tpm="+e.other.Transport())
	cfg := twoway.KeyConfig{KeyID: 1, KEM: e.keys.KeyConfigs()[0].KEM, PublicKey: otherKey.PublicKeyBytes(), Suites: e.keys.KeyConfigs()[0].Suites}
	oev, err := otherKey.(keystore.Attester).Attest(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	och, _, err := attest.MakeChallenge(oev)
	if err != nil {
		t.Fatal(err)
	}
	otherCh, _ := json.Marshal(och)

	for _, tc := range []struct {
		name, path, method, ctype string
		body                      []byte
		status                    int
		detail                    string
	}{
		{"nonce not hex", gateway.EvidenceSuffix + "?nonce=xyz", "GET", "", nil, 400, "nonce is not hex"},
		{"nonce empty", gateway.EvidenceSuffix + "?nonce=", "GET", "", nil, 400, "nonce of 0 bytes"},
		{"nonce too long", gateway.EvidenceSuffix + "?nonce=" + strings.Repeat("00", 65), "GET", "", nil, 400, "nonce of 65 bytes"},
		{"nonce twice", gateway.EvidenceSuffix + "?nonce=00&nonce=01", "GET", "", nil, 400, "nonce given 2 times"},
		{"unknown parameter", gateway.EvidenceSuffix + "?n=00", "GET", "", nil, 400, `unknown query parameter "n"`},
		{"evidence by POST", gateway.EvidenceSuffix, "POST", "application/json", good, 405, "GET and HEAD"},
		{"activate by GET", gateway.ActivateSuffix, "GET", "", nil, 405, "by POST"},
		{"not JSON", gateway.ActivateSuffix, "POST", "application/json", []byte("not json"), 400, "malformed"},
		{"empty body", gateway.ActivateSuffix, "POST", "application/json", nil, 400, "malformed"},
		{"unknown member", gateway.ActivateSuffix, "POST", "application/json", bytes.Replace(good, []byte(`"version"`), []byte(`"x":1,"version"`), 1), 400, `unknown field "x"`},
		{"repeated member", gateway.ActivateSuffix, "POST", "application/json", bytes.Replace(good, []byte(`"version":1`), []byte(`"version":1,"version":1`), 1), 400, "repeated"},
		{"other version", gateway.ActivateSuffix, "POST", "application/json", bytes.Replace(good, []byte(`"version":1`), []byte(`"version":2`), 1), 400, "challenge: attest: unsupported format version: version 2"},
		{"missing field", gateway.ActivateSuffix, "POST", "application/json", []byte(`{"version":1}`), 400, "ek_public: 0 bytes"},
		{"too large", gateway.ActivateSuffix, "POST", "application/json", bytes.Repeat([]byte(" "), attest.MaxChallengeSize+1), 413, "at most"},
		{"wrong media type", gateway.ActivateSuffix, "POST", "text/plain", good, 415, "application/json"},
		{"another TPM", gateway.ActivateSuffix, "POST", "application/json", otherCh, 400, "not for the EK and AK"},
		{"unknown key id", gateway.ActivateSuffix + "?key_id=9", "POST", "application/json", good, 400, "no key id 9"},
		{"bad key id", gateway.ActivateSuffix + "?key_id=x", "POST", "application/json", good, 400, "key_id is a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.url+tc.path, bytes.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != gateway.ProblemMediaType {
				t.Fatalf("%s %s: %s %q, want %d: %s", tc.method, tc.path, resp.Status, resp.Header.Get("Content-Type"), tc.status, b)
			}
			if p := problemOf(t, b); !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q lacks %q", p.Detail, tc.detail)
			}
		})
	}
	// The good challenge, by key id, is answered.
	resp, b := postChallenge(t, e.url+"", "application/json", good)
	if resp.StatusCode != 200 {
		t.Fatalf("the good challenge: %s %s", resp.Status, b)
	}
}

// TestEvidenceRateLimit: fresh evidence and activation share one token
// bucket; past it, 429 with Retry-After, and the cached evidence is still
// served.
func TestEvidenceRateLimit(t *testing.T) {
	e := startEvidence(t, false, gateway.WithEvidenceLimiter(rate.NewLimiter(0.01, 2)))
	fresh := e.url + gateway.EvidenceSuffix + "?nonce=00112233"
	for i := range 2 {
		if resp, b := getEvidence(t, fresh); resp.StatusCode != 200 {
			t.Fatalf("request %d: %s %s", i, resp.Status, b)
		}
	}
	resp, b := getEvidence(t, fresh)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past the limit: %s Retry-After %q %s", resp.Status, resp.Header.Get("Retry-After"), b)
	}
	if p := problemOf(t, b); !strings.Contains(p.Detail, "rate-limited") {
		t.Errorf("429 detail: %q", p.Detail)
	}
	// Activation takes from the same bucket.
	_, body := getEvidence(t, e.url+gateway.EvidenceSuffix)
	set, err := attest.ParseEvidenceSet(body)
	if err != nil {
		t.Fatal(err)
	}
	ch, _, _ := attest.MakeChallenge(set.Keys[0].Evidence)
	cb, _ := json.Marshal(ch)
	if resp, b := postChallenge(t, e.url, "application/json", cb); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("activation past the limit: %s %s", resp.Status, b)
	}
	// The cached evidence is not limited.
	for range 3 {
		if resp, b := getEvidence(t, e.url+gateway.EvidenceSuffix); resp.StatusCode != 200 {
			t.Fatalf("cached evidence: %s %s", resp.Status, b)
		}
	}
}

// TestEvidenceVerifyDuplicateKeyID: a gateway that publishes a second
// configuration under the key id of its TPM key, with a key of its own
// (not in a TPM), must not pass attesthttp.Verify: the TPM key's evidence
// attests its own configuration, not every configuration with its key id.
func TestEvidenceVerifyDuplicateKeyID(t *testing.T) {
	e := startEvidence(t, false, gateway.WithEvidenceLimiter(rate.NewLimiter(100, 100)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	published, err := e.keys.MarshalKeyConfigs()
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := kem.GenerateKey(kem.DHKEMP256HKDFSHA256)
	if err != nil {
		t.Fatal(err)
	}
	rg := twoway.NewGateway(nil)
	if err := rg.AddKey(1, rogue, testSuite); err != nil {
		t.Fatal(err)
	}
	extra, err := rg.MarshalKeyConfigs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		list []byte
	}{
		{"rogue after", append(bytes.Clone(published), extra...)},
		{"rogue first", append(bytes.Clone(extra), published...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if e.ev.Handles(r.URL.Path) {
					e.ev.ServeHTTP(w, r)
					return
				}
				w.Header().Set("Content-Type", twoway.KeyConfigMediaType)
				w.Write(tc.list)
			}))
			defer srv.Close()
			res, err := attesthttp.Verify(ctx, nil, srv.URL+gateway.DefaultPath, e.opts)
			if err == nil || (res != nil && res.Attested()) {
				t.Fatalf("a rogue configuration under an attested key id: %v, attested", err)
			}
			if !errors.Is(err, attest.ErrKeyConfig) || !strings.Contains(err.Error(), "key id 1") {
				t.Errorf("error %v, want ErrKeyConfig naming key id 1", err)
			}
		})
	}
}

// TestEvidenceMetrics: WithEvidenceMetrics counts requests by endpoint
// and status.
func TestEvidenceMetrics(t *testing.T) {
	m := gateway.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	e := startEvidence(t, false, gateway.WithEvidenceMetrics(m))
	getEvidence(t, e.url+gateway.EvidenceSuffix)
	getEvidence(t, e.url+gateway.EvidenceSuffix)
	getEvidence(t, e.url+gateway.EvidenceSuffix+"?nonce=00112233")
	getEvidence(t, e.url+gateway.EvidenceSuffix+"?nonce=zz")
	getEvidence(t, e.url+gateway.EvidenceSuffix+"?nonce=00;x") // a query Go's URL.Query would drop
	if resp, err := http.Post(e.url+gateway.ActivateSuffix, "text/plain", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
	}
	const name = "twoway_gateway_evidence_requests_total"
	got := map[string]float64{}
	for k, v := range gathered(t, reg) {
		if labels, ok := strings.CutPrefix(k, name+"{"); ok {
			got["{"+labels] = v
		}
	}
	want := map[string]float64{
		"{endpoint=cached}{status=200}":   2,
		"{endpoint=fresh}{status=200}":    1,
		"{endpoint=fresh}{status=400}":    2,
		"{endpoint=activate}{status=415}": 1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("evidence requests counted %v; want %v", got, want)
	}
}

// TestEvidenceChainOption: WithEvidenceChain refuses what is not a
// certificate, and more than evidence carries.
func TestEvidenceChainOption(t *testing.T) {
	ctx := context.Background()
	if _, err := gateway.NewEvidenceHandler(ctx, newKeys(t), nil, gateway.WithEvidenceChain([][]byte{[]byte("not DER")})); err == nil ||
		!strings.Contains(err.Error(), "EK chain certificate 1") {
		t.Errorf("a chain that is not a certificate: %v", err)
	}
	many := make([][]byte, attest.MaxEKChain+1)
	if _, err := gateway.NewEvidenceHandler(ctx, newKeys(t), nil, gateway.WithEvidenceChain(many)); err == nil ||
		!strings.Contains(err.Error(), "more than evidence carries") {
		t.Errorf("%d chain certificates: %v", len(many), err)
	}
}
