// Package attesthttp verifies, from a client, that a twoway-hsm gateway's
// keys live in a TPM: it fetches the key configuration the gateway
// publishes and fresh evidence for a random nonce, verifies it with
// package attest against the TPM manufacturers' roots, and runs credential
// activation through the gateway, so that a client trusts the TPM maker
// and not the operator.
//
//	res, err := attesthttp.Verify(ctx, http.DefaultClient, "https://gw.example/.well-known/ohttp-gateway", attest.Options{Roots: tpmRoots})
//	if err != nil { ... }   // some published key is not attested: err says which and why
//	configs := res.KeyConfigs // every one attested: seal requests to them
//
// The gateway's side is gateway.EvidenceHandler: GET
// /.well-known/ohttp-gateway/evidence?nonce=HEX and POST
// /.well-known/ohttp-gateway/evidence/activate.
package attesthttp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/client"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// NonceSize is the size of the nonce Verify sends.
const NonceSize = 32

// Result is what Verify found.
type Result struct {
	// KeyConfigs are the key configurations the gateway publishes.
	KeyConfigs []twoway.KeyConfig
	// Nonce is the nonce the evidence was made for.
	Nonce []byte
	// Keys has one entry for each published key, in KeyConfigs' order.
	Keys []KeyResult
}

// KeyResult is the verification of one published key.
type KeyResult struct {
	KeyID byte
	// Result is what attest.Verify verified; nil if it failed.
	Result *attest.Result
	// Activated says that credential activation through the gateway
	// proved the AK to be in the EK's TPM.
	Activated bool
	// Err says why the key is not attested (nil when it is): it wraps
	// attest.ErrNotAttestable for a key that cannot be (PKCS#11, soft),
	// or the attest sentinel of the check that failed.
	Err error
}

// Attested reports whether every published key is attested.
func (r *Result) Attested() bool {
	for _, k := range r.Keys {
		if k.Err != nil {
			return false
		}
	}
	return len(r.Keys) > 0
}

// Verify fetches gatewayURL's key configuration (GET, application/ohttp-keys,
// with gateway/client.FetchKeyConfigs)
// and fresh evidence for a random nonce (GET gatewayURL/evidence?nonce=HEX),
// verifies the evidence of every published key with attest.Verify under
// opts (its KeyConfigs and Nonce are set here: that key's published
// configuration, which the evidence must attest byte for byte, and the
// nonce sent; a key id published twice is refused), and runs credential activation for each TPM through the
// gateway (POST gatewayURL/evidence/activate). gatewayURL is the gateway
// path, e.g. https://gw.example/.well-known/ohttp-gateway. hc nil means
// http.DefaultClient.
//
// It returns an error unless every published key is attested; the Result
// is returned whenever the gateway answered, so that a caller can see
// which keys are. A failure to reach the gateway or a malformed answer is
// an error with a nil Result.
func Verify(ctx context.Context, hc *http.Client, gatewayURL string, opts attest.Options) (*Result, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	base, err := url.Parse(gatewayURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("attesthttp: %q is not an http(s) URL", gatewayURL)
	}
	base.RawQuery, base.Fragment = "", ""
	// The key configuration as every client of the gateway fetches it
	// (bounded at client.MaxKeyConfigLen; an *client.OuterError or
	// *client.MediaTypeError otherwise).
	configs, err := client.FetchKeyConfigs(ctx, hc, base.String())
	if err != nil {
		return nil, fmt.Errorf("attesthttp: key configuration: %w", err)
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	evURL := strings.TrimSuffix(base.String(), "/") + "/evidence"
	body, err := get(ctx, hc, evURL+"?nonce="+hex.EncodeToString(nonce), attest.EvidenceSetMediaType, attest.MaxEvidenceSetSize)
	if err != nil {
		return nil, fmt.Errorf("attesthttp: evidence: %w", err)
	}
	set, err := attest.ParseEvidenceSet(body)
	if err != nil {
		return nil, fmt.Errorf("attesthttp: %w", err)
	}
	if !bytes.Equal(set.Nonce, nonce) {
		return nil, fmt.Errorf("attesthttp: %w: the gateway's evidence is not for the nonce sent", attest.ErrNonce)
	}
	opts.KeyConfigs, opts.Nonce, opts.AnyNonce = configs, nonce, false
	res := &Result{KeyConfigs: configs, Nonce: nonce}
	byID := map[byte]*attest.KeyEvidence{}
	for i := range set.Keys {
		byID[set.Keys[i].KeyID] = &set.Keys[i]
	}
	// One activation for each TPM (EK and AK): keys in the same TPM share
	// its answer.
	activated := map[string]error{}
	published := map[byte]int{}
	for _, cfg := range configs {
		published[cfg.KeyID]++
	}
	for _, cfg := range configs {
		kr := KeyResult{KeyID: cfg.KeyID}
		e, ok := byID[cfg.KeyID]
		// Each configuration must be the one its evidence attests, byte
		// for byte: not merely one of those published.
		opts.KeyConfigs = []twoway.KeyConfig{cfg}
		switch {
		case published[cfg.KeyID] > 1:
			// The evidence binds one configuration to the key id; a
			// second (another public key, say) would be sealed to as
			// if it were attested.
			kr.Err = fmt.Errorf("key id %d: %w: published in %d configurations; a key id's evidence attests one", cfg.KeyID, attest.ErrKeyConfig, published[cfg.KeyID])
		case !ok:
			kr.Err = fmt.Errorf("key id %d: the gateway serves no evidence for it", cfg.KeyID)
		case e.Evidence == nil:
			kr.Err = e.Err()
		default:
			r, err := attest.Verify(e.Evidence, opts)
			if err != nil {
				kr.Err = fmt.Errorf("key id %d: %w", cfg.KeyID, err)
				break
			}
			kr.Result = r
			tpm := string(e.Evidence.EKPublic) + "\x00" + string(e.Evidence.AKPublic)
			aerr, done := activated[tpm]
			if !done {
				aerr = activate(ctx, hc, evURL+"/activate", e.Evidence)
				activated[tpm] = aerr
			}
			if aerr != nil {
				kr.Err = fmt.Errorf("key id %d: %w", cfg.KeyID, aerr)
				break
			}
			kr.Activated = true
		}
		res.Keys = append(res.Keys, kr)
	}
	var errs []error
	for _, k := range res.Keys {
		if k.Err != nil {
			errs = append(errs, k.Err)
		}
	}
	if len(res.Keys) == 0 {
		errs = append(errs, errors.New("the gateway publishes no keys"))
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("attesthttp: not attested: %w", errors.Join(errs...))
	}
	return res, nil
}

// activate runs credential activation for ev through the gateway.
func activate(ctx context.Context, hc *http.Client, u string, ev *attest.Evidence) error {
	ch, secret, err := attest.MakeChallenge(ev)
	if err != nil {
		return err
	}
	b, err := json.Marshal(ch)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", gateway.ChallengeMediaType)
	req.Header.Set("Accept", gateway.ChallengeMediaType)
	body, err := client.Do(hc, req, "the activation answer", gateway.ChallengeMediaType, attest.MaxAnswerSize)
	if err != nil {
		return fmt.Errorf("%w: through the gateway: %w", attest.ErrActivation, err)
	}
	ans, err := attest.ParseAnswer(body)
	if err != nil {
		return fmt.Errorf("%w: the gateway's answer: %w", attest.ErrActivation, err)
	}
	return attest.CheckActivation(secret, ans)
}

func get(ctx context.Context, hc *http.Client, u, mediaType string, limit int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", mediaType)
	return client.Do(hc, req, "the evidence", mediaType, limit)
}
