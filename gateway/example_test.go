package gateway_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The gateway around an application's own http.Handler. In production the
// key comes from the plugin client (client.Key(ctx, ref)), whose private
// half stays in a PKCS#11 token or a TPM; here it is a soft key.
func Example() {
	// the application
	app := http.NewServeMux()
	app.HandleFunc("POST /v1/complete", func(w http.ResponseWriter, r *http.Request) {
		prompt, _ := io.ReadAll(r.Body)
		for _, word := range strings.Fields(string(prompt)) {
			fmt.Fprintf(w, "%s ", strings.ToUpper(word))
			w.(http.Flusher).Flush() // chunked: one sealed chunk per flush
		}
	})

	// the keys: key id 1, accepting HKDF-SHA256 with AES-128-GCM
	key, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256) // or: pluginClient.Key(ctx, "pkcs11:token=gw;id=%01")
	if err != nil {
		log.Fatal(err)
	}
	keys := twoway.NewGateway(nil)
	if err := keys.AddKey(1, key, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}); err != nil {
		log.Fatal(err)
	}

	// the gateway: requests and the key configuration at /.well-known/ohttp-gateway
	metrics := gateway.NewMetrics() // register with the metrics listener's prometheus.Registry
	gw, err := gateway.New(keys, app,
		gateway.WithMetrics(metrics),
		gateway.WithTargetPolicy(func(r *http.Request) error {
			if r.Host != "api.example" {
				return fmt.Errorf("this gateway serves api.example, not %q", r.Host)
			}
			return nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	// srv := gateway.NewServer(":8443", gw); srv.ListenAndServeTLS(cert, key)
	srv := httptest.NewServer(gw)
	defer srv.Close()

	resp, err := http.Get(srv.URL + gateway.DefaultPath)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"))
	// Output: 200 application/ohttp-keys
}
