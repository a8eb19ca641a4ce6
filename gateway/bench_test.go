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
// order, requests per second and CPU per request (client and server
// together, from getrusage) over loopback HTTP with the same client and the
// same echo origin:
//
//	plain    a POST of the payload to the origin, no OHTTP
//	bare     plain plus the same HPKE and Binary HTTP work done inline with
//	         circl, crypto/hkdf and crypto/cipher, no gateway code
//	gateway  the gateway around the origin, the key in this process
//
// Each round runs benchBatch requests on each of benchWorkers clients per
// row. Run: go test ./gateway -run '^$' -bench BenchmarkGateway -count 5
func BenchmarkGateway(b *testing.B) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * benchWorkers}}
	defer hc.CloseIdleConnections()
	setups := gatewaySetups(b)
	payload := bytes.Repeat([]byte("p"), benchPayload)
	for _, s := range setups { // warm up and check every row
		for range 20 {
			if err := s.do(hc, payload); err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
		}
	}
	wall := make([]time.Duration, len(setups))
	cpu := make([]time.Duration, len(setups))
	b.ResetTimer()
	for i := range b.N {
		for k := range setups {
			j := (i + k) % len(setups)
			c0, t0 := cpuTime(b), time.Now()
			if err := runBatch(hc, setups[j], payload); err != nil {
				b.Fatalf("%s: %v", setups[j].name, err)
			}
			wall[j] += time.Since(t0)
			cpu[j] += cpuTime(b) - c0
		}
	}
	b.StopTimer()
	n := float64(b.N * benchWorkers * benchBatch)
	rate := make([]float64, len(setups))
	for j, s := range setups {
		rate[j] = n / wall[j].Seconds()
		b.ReportMetric(rate[j], s.name+"-req/s")
		b.ReportMetric(float64(cpu[j].Microseconds())/n, s.name+"-cpu-µs/req")
	}
	b.ReportMetric(rate[2]/rate[1], "gateway/bare-req/s")
}

func runBatch(hc *http.Client, s benchSetup, payload []byte) error {
	var wg sync.WaitGroup
	errs := make([]error, benchWorkers)
	for w := range benchWorkers {
		wg.Go(func() {
			for range benchBatch {
				if err := s.do(hc, payload); err != nil {
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

// gatewaySetups returns the rows plain, bare and gateway, all around the
// echo origin.
func gatewaySetups(b *testing.B) []benchSetup {
	pub, priv, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().GenerateKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	sender, err := twoway.NewRequestSender(hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM), 1, pub, nil)
	if err != nil {
		b.Fatal(err)
	}
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

	bareURL := serve(bareGateway(b, priv, echo))
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
	gwURL := serve(gw)
	ohttpDo := func(url string) func(*http.Client, []byte) error {
		return func(hc *http.Client, payload []byte) error {
			msg, err := bhttp.AppendRequest(nil, &bhttp.Request{Framing: bhttp.KnownLengthRequest, Method: "POST", Scheme: "https",
				Authority: "origin.example", Path: "/"}, payload, nil)
			if err != nil {
				return err
			}
			s, err := sender.NewRequestSealer(bytes.NewReader(msg), []byte(gateway.RequestLabel))
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
			o, err := s.NewResponseOpener(resp.Body, []byte(gateway.ResponseLabel))
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
	}
	return []benchSetup{plain, {"bare", ohttpDo(bareURL)}, {"gateway", ohttpDo(gwURL)}}
}

// bareGateway is the least an OHTTP gateway must do, inline and with no
// gateway code: read the request, open it with circl's HPKE, decode the
// Binary HTTP request, run the origin's handler into a recorder, encode
// its response and seal it (RFC 9458 section 4.4).
func bareGateway(b *testing.B, priv interface {
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
