package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// failingAttester fails as a TPM that does not answer would, with an
// error that names a path.
type failingAttester struct{ calls *atomic.Int32 }

func (f failingAttester) Attest(context.Context, twoway.KeyConfig, []byte) (*attest.Evidence, error) {
	f.calls.Add(1)
	return nil, errors.New("plugins: key tpm2:file=/etc/secret-place/gw.pem: tpm2: the TPM did not answer")
}

func (f failingAttester) Activate(context.Context, *attest.Challenge) (*attest.Answer, error) {
	return nil, errors.New("unreachable")
}

// aChallenge is a challenge that parses (its credential blob of the size
// attest.MakeChallenge makes) but is for no TPM.
const aChallenge = `{"version":1,"ek_public":"AA==","ak_public":"AA==","credential_blob":"` +
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" + `","encrypted_secret":"AA=="}`

// TestEvidenceCollectFailure: a key whose evidence cannot be collected is
// listed with a problem that is not "not attestable" and does not name
// the key's reference; the failure is cached (the TPM is not asked again
// by every GET), and the container that holds it is cacheable no longer
// than the gateway keeps the failure; a key without an attester is not
// attestable; activation by key id for a key without evidence is 400; a
// query that does not parse is 400, not the cached container.
func TestEvidenceCollectFailure(t *testing.T) {
	keys := newKeys(t)
	k, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.AddKey(2, k, testSuite); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	eh, err := gateway.NewEvidenceHandler(context.Background(), keys, map[byte]gateway.Attester{1: failingAttester{&calls}},
		gateway.WithEvidencePath("/gw"), gateway.WithEvidenceLogger(quietLogger()), gateway.WithEvidenceMaxAge(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(eh)
	defer srv.Close()
	for range 3 {
		resp, body := getEvidence(t, srv.URL+"/gw"+gateway.EvidenceSuffix)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s", resp.Status, body)
		}
		set, err := attest.ParseEvidenceSet(body)
		if err != nil {
			t.Fatal(err)
		}
		failed, none := set.Keys[0], set.Keys[1]
		if failed.Evidence != nil || failed.NotAttestable || !strings.Contains(failed.Problem, "could not be collected") || strings.Contains(string(body), "secret-place") {
			t.Errorf("the failed key's entry: %+v", failed)
		}
		if none.KeyID != 2 || !none.NotAttestable || errors.Is(failed.Err(), attest.ErrNotAttestable) || !errors.Is(none.Err(), attest.ErrNotAttestable) {
			t.Errorf("entries: %+v %+v", failed, none)
		}
		cc := resp.Header.Get("Cache-Control")
		age, err := strconv.Atoi(strings.TrimPrefix(cc, "max-age="))
		if !strings.HasPrefix(cc, "max-age=") || err != nil || age > 30 {
			t.Errorf("a container with a failure of the moment: Cache-Control %q, want max-age of at most 30", cc)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the failing TPM was asked %d times for cached evidence, want once", n)
	}
	resp, _ := postChallenge(t, srv.URL+"/gw", "application/json", []byte(aChallenge))
	if resp.StatusCode != 400 {
		t.Errorf("activation with no evidence at all: %s", resp.Status)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/gw"+gateway.ActivateSuffix+"?key_id=1", strings.NewReader(aChallenge))
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(problemOf(t, body).Detail, "key id 1 has no evidence") {
		t.Errorf("activation by key id without evidence: %s %s", resp.Status, body)
	}
	// A query that does not parse (a semicolon): Go drops the pair, so
	// this was the cached container, as if no nonce had been sent.
	for _, q := range []string{gateway.EvidenceSuffix + "?nonce=00;x=1", gateway.EvidenceSuffix + "?nonce=%zz", gateway.ActivateSuffix + "?key_id=1;x"} {
		method := "GET"
		if strings.HasPrefix(q, gateway.ActivateSuffix) {
			method = "POST"
		}
		req, _ := http.NewRequest(method, srv.URL+"/gw"+q, strings.NewReader(aChallenge))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(problemOf(t, body).Detail, "query") {
			t.Errorf("%s %s: %s %s, want 400 saying the query is bad", method, q, resp.Status, body)
		}
	}
	// Elsewhere: 404.
	if resp, _ := getEvidence(t, srv.URL+"/gw/other"); resp.StatusCode != 404 {
		t.Errorf("another path: %s", resp.Status)
	}
}

// blockingAttester waits for its context on the first call (a TPM that
// is slow), then answers with the testdata evidence.
type blockingAttester struct {
	ev      *attest.Evidence
	entered chan struct{}
	calls   *atomic.Int32
}

func (b blockingAttester) Attest(ctx context.Context, _ twoway.KeyConfig, _ []byte) (*attest.Evidence, error) {
	if b.calls.Add(1) == 1 {
		close(b.entered)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return b.ev, nil
}

func (b blockingAttester) Activate(context.Context, *attest.Challenge) (*attest.Answer, error) {
	return nil, errors.New("unreachable")
}

// TestEvidenceCollectCanceled: the client whose GET finds a key's cached
// evidence missing does not decide its fate by going away: the
// collection goes on (bounded by the handler's timeout) and its result is
// cached. It was made with the client's context, so a client that hung
// up cached a failure for 30 s, and one GET every 30 s kept the gateway
// from ever serving the evidence.
func TestEvidenceCollectCanceled(t *testing.T) {
	ev := testdataEvidence(t)
	keys := newKeys(t)
	keys.SetPublished(1, false) // nothing to collect at the start
	var calls atomic.Int32
	a := blockingAttester{ev: ev, entered: make(chan struct{}), calls: &calls}
	eh, err := gateway.NewEvidenceHandler(context.Background(), keys, map[byte]gateway.Attester{1: a},
		gateway.WithEvidenceLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	keys.SetPublished(1, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		eh.Evidence(ctx) // the client that hangs up
	}()
	<-a.entered
	cancel()
	<-done
	set := eh.Evidence(context.Background())
	if len(set.Keys) != 1 || set.Keys[0].Evidence == nil {
		t.Fatalf("after a client hung up during the collection: %+v", set.Keys)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the TPM was asked %d times, want once", n)
	}
}

// TestEvidenceRateLimitPerKey: fresh evidence makes the TPM certify every
// published key, and takes a token for each (up to the bucket's size):
// with three keys and a bucket of three, one request empties it. It took
// one token whatever the number of keys, so the rate bounded requests,
// not the TPM's work.
func TestEvidenceRateLimitPerKey(t *testing.T) {
	keys := twoway.NewGateway(nil)
	var calls atomic.Int32
	attesters := map[byte]gateway.Attester{}
	for id := range byte(3) {
		k, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := keys.AddKey(id+1, k, testSuite); err != nil {
			t.Fatal(err)
		}
		attesters[id+1] = failingAttester{&calls}
	}
	eh, err := gateway.NewEvidenceHandler(context.Background(), keys, attesters, gateway.WithEvidencePath("/gw"),
		gateway.WithEvidenceLogger(quietLogger()), gateway.WithEvidenceLimiter(rate.NewLimiter(rate.Every(time.Hour), 3)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(eh)
	defer srv.Close()
	start := calls.Load()
	if resp, b := getEvidence(t, srv.URL+"/gw"+gateway.EvidenceSuffix+"?nonce=00"); resp.StatusCode != 200 {
		t.Fatalf("the first fresh evidence: %s %s", resp.Status, b)
	}
	for i := range 2 {
		if resp, b := getEvidence(t, srv.URL+"/gw"+gateway.EvidenceSuffix+"?nonce=01"); resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("fresh evidence %d after a request that certified 3 keys with a bucket of 3: %s %s", i+2, resp.Status, b)
		}
	}
	if n := calls.Load() - start; n != 3 {
		t.Errorf("the TPM certified %d keys for fresh evidence, want 3", n)
	}
}

// TestEvidenceHandles: Handles matches the two endpoints under the
// gateway path and nothing else, and allocates nothing: a server that
// routes by it (twoway-hsm gateway) asks it for every OHTTP request.
func TestEvidenceHandles(t *testing.T) {
	eh, err := gateway.NewEvidenceHandler(context.Background(), newKeys(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		gateway.DefaultPath + gateway.EvidenceSuffix: true,
		gateway.DefaultPath + gateway.ActivateSuffix: true,
		gateway.DefaultPath:                          false,
		gateway.DefaultPath + "/evidence/":           false,
		"/other" + gateway.ActivateSuffix:            false,
	} {
		if got := eh.Handles(path); got != want {
			t.Errorf("Handles(%q) = %v, want %v", path, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { eh.Handles(gateway.DefaultPath) }); n != 0 {
		t.Errorf("Handles allocates %v times per call, want 0", n)
	}
}

// TestEvidenceTimeout: WithEvidenceTimeout bounds a TPM operation (the
// attester here takes 300 ms; the bound is 50 ms), and a bound that is
// not positive is refused.
func TestEvidenceTimeout(t *testing.T) {
	ev := testdataEvidence(t)
	keys := newKeys(t)
	var calls atomic.Int32
	a := blockingAttester{ev: ev, entered: make(chan struct{}), calls: &calls}
	eh, err := gateway.NewEvidenceHandler(context.Background(), keys, map[byte]gateway.Attester{1: a},
		gateway.WithEvidenceLogger(quietLogger()), gateway.WithEvidenceTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	set := eh.Evidence(context.Background())
	if len(set.Keys) != 1 || set.Keys[0].Evidence != nil || !strings.Contains(set.Keys[0].Problem, "could not be collected") {
		t.Fatalf("an attester slower than the timeout: %+v", set.Keys)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("the collection took %v, past the 50 ms timeout", d)
	}
	if _, err := gateway.NewEvidenceHandler(context.Background(), keys, nil, gateway.WithEvidenceTimeout(0)); err == nil || !strings.Contains(err.Error(), "not positive") {
		t.Errorf("a timeout of 0: %v", err)
	}
}

// testdataEvidence is the attest package's evidence of a swtpm key.
func testdataEvidence(t testing.TB) *attest.Evidence {
	t.Helper()
	b, err := os.ReadFile("../attest/testdata/evidence.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := attest.ParseEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
