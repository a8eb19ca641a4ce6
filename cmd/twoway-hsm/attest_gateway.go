package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/attest/attesthttp"
)

// gatewayVerifyTimeout bounds attest verify --gateway as a whole.
const gatewayVerifyTimeout = 2 * time.Minute

// gatewayVerifyView is what attest verify --gateway prints.
type gatewayVerifyView struct {
	Verified bool             `json:"verified"`
	Gateway  string           `json:"gateway"`
	Nonce    string           `json:"nonce"`
	Keys     []gatewayKeyView `json:"keys"`
}

type gatewayKeyView struct {
	KeyID byte `json:"key_id"`
	// Evidence is what verified, nil if the evidence did not.
	Evidence *verifyView `json:"evidence,omitempty"`
	// Error says why the key is not attested.
	Error         string `json:"error,omitempty"`
	NotAttestable bool   `json:"not_attestable,omitempty"`
}

// verifyGateway is attest verify --gateway URL: the key configuration and
// fresh evidence for a random nonce from the gateway, verified, and
// credential activation through the gateway (package attesthttp).
func verifyGateway(ctx context.Context, c *cmdline, hc *http.Client, gwURL string, opts attest.Options) int {
	ctx, cancel := context.WithTimeout(ctx, gatewayVerifyTimeout)
	defer cancel()
	res, err := attesthttp.Verify(ctx, hc, gwURL, opts)
	if res == nil {
		return c.fail(fmt.Errorf("evidence NOT verified: %w", err))
	}
	v := &gatewayVerifyView{Verified: err == nil, Gateway: redactURL(gwURL), Nonce: fmt.Sprintf("%x", res.Nonce)}
	for _, k := range res.Keys {
		kv := gatewayKeyView{KeyID: k.KeyID}
		if k.Result != nil {
			kv.Evidence = viewOfResult(k.Result)
			kv.Evidence.publishedBy, kv.Evidence.nonceBy = "the gateway's, fetched", "the one this command sent"
			if k.Activated {
				kv.Evidence.Binding, kv.Evidence.Activated = "verified", "the gateway"
			}
			kv.Evidence.Verified = k.Err == nil
		}
		if k.Err != nil {
			kv.Error = oneLine(k.Err.Error())
			kv.NotAttestable = errors.Is(k.Err, attest.ErrNotAttestable)
		}
		v.Keys = append(v.Keys, kv)
	}
	if err != nil {
		if !c.json {
			printGatewayVerify(c.env.stderr, v)
		}
		return c.fail(fmt.Errorf("evidence NOT verified for every key the gateway publishes: %w", err))
	}
	return c.output(v, func(w io.Writer) { printGatewayVerify(w, v) })
}

func printGatewayVerify(w io.Writer, v *gatewayVerifyView) {
	fmt.Fprintf(w, "gateway:        %s\n", v.Gateway)
	fmt.Fprintf(w, "nonce:          %s (fresh, sent by this command)\n", v.Nonce)
	for _, k := range v.Keys {
		fmt.Fprintln(w)
		if k.Evidence != nil {
			printVerify(w, k.Evidence)
		} else {
			fmt.Fprintf(w, "key id:         %d\n", k.KeyID)
		}
		switch {
		case k.Error == "":
			fmt.Fprintln(w, "verified:       yes")
		case k.NotAttestable:
			fmt.Fprintf(w, "verified:       NO, not attestable: %s\n", k.Error)
		default:
			fmt.Fprintf(w, "verified:       NO: %s\n", k.Error)
		}
	}
}
