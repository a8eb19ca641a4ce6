package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// MaxKeyConfigLen bounds a fetched key configuration list: room for
// every key id with a post-quantum public key.
const MaxKeyConfigLen = 1 << 20

// FetchKeyConfigList GETs a gateway's application/ohttp-keys body, as it
// is: for callers that read the list themselves (keeping configurations
// of algorithms they do not know, say). The body is at most
// MaxKeyConfigLen bytes; another media type is a *MediaTypeError, an
// answer other than 200 an *OuterError.
func FetchKeyConfigList(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return Do(hc, req, "the key configuration", gateway.KeyConfigMediaType, MaxKeyConfigLen)
}

// Do sends req with hc (nil for http.DefaultClient) and returns the body
// of a 200 answer of mediaType, at most limit bytes; what names the
// answer in errors ("the key configuration"). An answer other than 200 is
// an *OuterError, another media type a *MediaTypeError. It serves the
// gateway's other endpoints: the key configuration (FetchKeyConfigList)
// and the evidence.
func Do(hc *http.Client, req *http.Request, what, mediaType string, limit int) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	u := req.URL.String()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: fetch %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readOuterError(resp)
	}
	if err := checkMediaType(resp, u, mediaType); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("client: read %s from %s: %w", what, redact(u), err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("client: %s from %s is larger than %d bytes", what, redact(u), limit)
	}
	return b, nil
}

// FetchKeyConfigs GETs a gateway's key configurations
// (application/ohttp-keys) and parses them strictly.
func FetchKeyConfigs(ctx context.Context, hc *http.Client, url string) ([]twoway.KeyConfig, error) {
	b, err := FetchKeyConfigList(ctx, hc, url)
	if err != nil {
		return nil, err
	}
	kcs, err := twoway.ParseKeyConfigs(b)
	if err != nil {
		return nil, fmt.Errorf("client: the key configuration from %s: %w", redact(url), err)
	}
	return kcs, nil
}

// FetchKeyConfig returns the first key configuration of a gateway that
// this client can use.
func FetchKeyConfig(ctx context.Context, hc *http.Client, url string) (twoway.KeyConfig, error) {
	kcs, err := FetchKeyConfigs(ctx, hc, url)
	if err != nil {
		return twoway.KeyConfig{}, err
	}
	for _, kc := range kcs {
		if kc.KEM.IsValid() && len(kc.Suites) > 0 {
			return kc, nil
		}
	}
	return twoway.KeyConfig{}, errors.New("client: the gateway publishes no key configuration this client can use")
}

// redact is a URL fit for messages: without a password.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}
