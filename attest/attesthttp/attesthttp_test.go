package attesthttp_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/attest/attesthttp"
	"github.com/twoway-hsm/twoway-hsm/gateway/client"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// TestVerifyRefuses: a gateway that answers badly is refused, saying how:
// evidence for another nonce, a wrong media type, a problem, a URL that
// is not http(s). (The gateway that answers well, with swtpm, is in
// package gateway's TestEvidenceTPM and cmd/twoway-hsm's
// TestGatewayEvidence.)
func TestVerifyRefuses(t *testing.T) {
	k, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	if err != nil {
		t.Fatal(err)
	}
	g := twoway.NewGateway(nil)
	if err := g.AddKey(1, k, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}); err != nil {
		t.Fatal(err)
	}
	keys, err := g.MarshalKeyConfigs()
	if err != nil {
		t.Fatal(err)
	}
	var evidence func(w http.ResponseWriter, r *http.Request)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gw":
			w.Header().Set("Content-Type", twoway.KeyConfigMediaType)
			w.Write(keys)
		case "/gw/evidence":
			evidence(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	opts := attest.Options{Roots: x509.NewCertPool()}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		h    func(w http.ResponseWriter, r *http.Request)
		want string
		is   error
	}{
		{"other nonce", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", attest.EvidenceSetMediaType)
			w.Write([]byte(`{"format":"twoway-hsm/gateway-evidence","version":1,"nonce":"AAAA","keys":[]}`))
		}, "not for the nonce sent", attest.ErrNonce},
		{"media type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{}`))
		}, `answered with application/json, not application/`, nil},
		{"problem", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(429)
			w.Write([]byte(`{"type":"about:blank","status":429,"title":"too many requests","detail":"rate-limited"}`))
		}, "429 Too Many Requests: too many requests: rate-limited (Retry-After 3)", nil},
		{"not attestable", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", attest.EvidenceSetMediaType)
			n := r.URL.Query().Get("nonce")
			w.Write([]byte(`{"format":"twoway-hsm/gateway-evidence","version":1,"nonce":"` + b64hex(t, n) + `","keys":[{"key_id":1,"not_attestable":true,"problem":"a soft key"}]}`))
		}, "key id 1: attest: the key cannot be attested: a soft key", attest.ErrNotAttestable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evidence = tc.h
			_, err := attesthttp.Verify(ctx, srv.Client(), srv.URL+"/gw", opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("Verify: %v, want %q", err, tc.want)
			}
		})
	}
	// The key configuration is fetched as every client fetches it
	// (gateway/client): a gateway path that serves none is its OuterError.
	var oe *client.OuterError
	if _, err := attesthttp.Verify(ctx, srv.Client(), srv.URL+"/nothing", opts); !errors.As(err, &oe) || oe.Status != http.StatusNotFound {
		t.Errorf("no key configuration: %v, want a client.OuterError of 404", err)
	}
	if _, err := attesthttp.Verify(ctx, nil, "ftp://gw.example/x", opts); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
		t.Errorf("an ftp URL: %v", err)
	}
}

// b64hex turns the hex nonce of a request into the base64 of the JSON.
func b64hex(t *testing.T, h string) string {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}
