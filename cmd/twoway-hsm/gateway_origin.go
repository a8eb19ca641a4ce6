package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/twoway-hsm/twoway-hsm/gateway"
)

// The gateway's origin: where the decapsulated requests go.
//
// With --target every inner request goes to one origin, whatever
// authority it names; with --allow-origin it goes to its own authority
// when that is listed, and is refused (403, inside the encapsulated
// response) otherwise. The proxy strips hop-by-hop headers, adds no
// X-Forwarded-* or Forwarded header (the inner request carries nothing of
// the outer one: no RemoteAddr, no relay headers), follows no redirect,
// and bounds the time to the origin's response headers.

// errForbiddenTarget is the policy's refusal.
var errForbiddenTarget = errors.New("the gateway does not forward requests to this origin")

// newOrigin returns the reverse proxy to the configured origin(s) and the
// target policy the gateway handler applies first.
func newOrigin(cfg gatewayConfig) (http.Handler, func(*http.Request) error, error) {
	transport := &http.Transport{
		Proxy:                 nil, // never through an HTTP proxy from the environment
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: time.Duration(cfg.OriginTimeout),
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // the origin's encoding reaches the client as it is
		ForceAttemptHTTP2:     true,
	}
	rp := &httputil.ReverseProxy{
		Transport:     transport,
		ErrorHandler:  gateway.OriginErrorHandler,
		FlushInterval: -1, // every write of the origin is flushed: a streamed response streams on
	}
	if cfg.Target != "" {
		target, err := url.Parse(cfg.Target)
		if err != nil {
			return nil, nil, err
		}
		rp.Rewrite = func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Del("Forwarded")
		}
		return rp, func(*http.Request) error { return nil }, nil
	}
	allowed := make([]string, len(cfg.AllowOrigins))
	for i, h := range cfg.AllowOrigins {
		allowed[i] = strings.ToLower(h)
	}
	rp.Rewrite = func(pr *httputil.ProxyRequest) {
		scheme := pr.In.URL.Scheme
		if scheme == "" {
			scheme = "https"
		}
		pr.Out.URL.Scheme, pr.Out.URL.Host = scheme, pr.In.Host
		pr.Out.Host = pr.In.Host
		pr.Out.Header.Del("Forwarded")
	}
	policy := func(r *http.Request) error {
		scheme := r.URL.Scheme
		if scheme == "" {
			scheme = "https"
		}
		if scheme != "http" && scheme != "https" {
			return fmt.Errorf("%w: scheme %q", errForbiddenTarget, scheme)
		}
		if !originAllowed(allowed, strings.ToLower(r.Host), scheme) {
			return fmt.Errorf("%w: %q", errForbiddenTarget, r.Host)
		}
		return nil
	}
	return rp, policy, nil
}

// originAllowed reports whether an authority is listed: exactly, or, for
// an entry without a port, with no port or the scheme's default one.
func originAllowed(allowed []string, authority, scheme string) bool {
	if authority == "" {
		return false
	}
	if slices.Contains(allowed, authority) {
		return true
	}
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return false // a bare host not listed
	}
	def := map[string]string{"http": "80", "https": "443"}[scheme]
	return port == def && slices.Contains(allowed, host)
}
