package attesthttp_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/attest/attesthttp"
)

// A client checks, before it sends anything, that every key the gateway
// publishes was generated in a TPM whose maker it trusts: fresh evidence
// for its own nonce, verified against the TPM makers' roots, and
// credential activation through the gateway. Only then does it seal
// requests to res.KeyConfigs.
func ExampleVerify() {
	pem, err := os.ReadFile("tpm-roots.pem") // the TPM manufacturers' root certificates
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)

	res, err := attesthttp.Verify(context.Background(), http.DefaultClient,
		"https://gw.example/.well-known/ohttp-gateway", attest.Options{Roots: roots})
	if err != nil {
		log.Fatal(err) // names the key and the check that failed
	}
	for _, k := range res.Keys {
		fmt.Printf("key id %d: in a TPM by %s, activated %v\n", k.KeyID, k.Result.EK.Manufacturer, k.Activated)
	}
	// seal requests to res.KeyConfigs ...
}
