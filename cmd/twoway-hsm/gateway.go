package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

const gatewayUsage = `Usage: twoway-hsm gateway --listen ADDR --key ID=REF [--key ID=REF ...] (--target URL | --allow-origin HOST ...) [flags]
       twoway-hsm gateway --config FILE

Serves Oblivious HTTP (RFC 9458, and Chunked OHTTP) behind a relay, with
keys in hardware: each --key is a key id and a key reference, opened
through a plugin process (this binary, 'twoway-hsm plugin'), so this
process never holds a private key. Requests are POSTed to
/.well-known/ohttp-gateway (RFC 9540), where GET returns the key
configuration (application/ohttp-keys); the decapsulated requests go to the
origin.

Origins:
  --target URL         every inner request goes to this origin (its path
                       and query are kept)
  --allow-origin HOST  an inner request goes to its own authority when that
                       is listed (repeatable; HOST or HOST:PORT)
Hop-by-hop headers are stripped; nothing of the outer request (the relay's
address, its headers) reaches the origin; redirects are not followed; the
origin's response is bounded by --max-response-len.

PINs and auth values: as everywhere, named by the reference
(pin-source=file:PATH or env:NAME, auth-source= for TPM keys); a variable
named with env:NAME is passed to the plugin, as are SOFTHSM2_CONF,
SOFTHSM2_MODULE, YUBIHSM_PKCS11_CONF, TMPDIR and GOMAXPROCS and those named
by --plugin-env. A pin-value is refused.

Attestation: GET /.well-known/ohttp-gateway/evidence serves, for each
published key, the evidence that it was generated in a TPM and cannot
leave it (collected through the plugin at start and at each reload; PKCS#11
and soft keys are listed as not attestable); ?nonce=HEX gives evidence the
TPM makes for a client's nonce, and POST .../evidence/activate answers a
credential-activation challenge with the key's TPM. Those two make the TPM
work and are rate-limited (--evidence-rate, default one a second, and
--evidence-burst, default ten at once; 429 with Retry-After). --ek-chain
adds the EK certificates' intermediate CAs the TPM does not hold. Clients
check it with 'twoway-hsm attest verify --gateway URL --roots PEM'.

Health and metrics: /healthz (the process serves) and /readyz (every key's
plugin answers) on the listener, and with /metrics (Prometheus) on
--metrics-listen.

Rotation: with --config FILE (JSON; its fields are the flags' names with
_ for -, and "keys" a list of {"id", "ref", "suites", "not_before",
"publish_until", "not_after"}; -v and --json are flags only, given with
--config), SIGHUP reloads the file: new keys are opened before any
request sees them, and requests in flight finish on the keys they started
with. The listen addresses, path, origins, origin, read-header and idle
timeouts, client CAs and whether TLS is on take a restart. A key is
accepted from not_before to not_after and published from not_before to
publish_until (default not_after), so that clients move to the next key
before this one goes. SIGTERM or SIGINT stops accepting, lets the
requests in flight finish within --shutdown-timeout, then stops the plugins.

Logs are JSON records on stderr (-v: debug), never with plaintext, PINs or
keys.

Examples:
  twoway-hsm gateway --listen 127.0.0.1:8080 \
    --key '1=pkcs11:token=gw;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/twoway/gw.pin' \
    --target http://127.0.0.1:9000
  twoway-hsm gateway --listen :8443 --tls-cert gw.crt --tls-key gw.key --client-ca relays.pem \
    --key 1=tpm2:file=/etc/twoway/gw.pem --allow-origin api.example.com --metrics-listen 127.0.0.1:9090
  twoway-hsm gateway --config /etc/twoway/gateway.json
`

// gatewayConfig is the gateway's configuration: the flags, or the file
// of --config, whose JSON field names are the flags' names.
type gatewayConfig struct {
	Listen            string            `json:"listen"`
	Keys              []gatewayKeyEntry `json:"keys"`
	Target            string            `json:"target,omitempty"`
	AllowOrigins      []string          `json:"allow_origin,omitempty"`
	TLSCert           string            `json:"tls_cert,omitempty"`
	TLSKey            string            `json:"tls_key,omitempty"`
	ClientCA          string            `json:"client_ca,omitempty"`
	MetricsListen     string            `json:"metrics_listen,omitempty"`
	Path              string            `json:"path,omitempty"`
	KeyConfigPath     string            `json:"key_config_path,omitempty"`
	Plugin            string            `json:"plugin,omitempty"`
	Processes         int               `json:"processes,omitempty"`
	PluginEnv         []string          `json:"plugin_env,omitempty"`
	MaxConcurrent     int               `json:"max_concurrent,omitempty"`
	MaxRequestLen     int64             `json:"max_request_len,omitempty"`
	MaxResponseLen    int64             `json:"max_response_len,omitempty"`
	HandlerTimeout    duration          `json:"handler_timeout,omitempty"`
	OriginTimeout     duration          `json:"origin_timeout,omitempty"`
	ReadHeaderTimeout duration          `json:"read_header_timeout,omitempty"`
	IdleTimeout       duration          `json:"idle_timeout,omitempty"`
	ShutdownTimeout   duration          `json:"shutdown_timeout,omitempty"`
	CacheMaxAge       duration          `json:"cache_max_age,omitempty"`
	EvidenceRate      float64           `json:"evidence_rate,omitempty"`
	EvidenceBurst     int               `json:"evidence_burst,omitempty"`
	EKChain           string            `json:"ek_chain,omitempty"`
}

// gatewayKeyEntry is one key of the configuration.
type gatewayKeyEntry struct {
	ID     int      `json:"id"`
	Ref    string   `json:"ref"`
	Suites []string `json:"suites,omitempty"`
	// NotBefore and NotAfter bound when the key is accepted;
	// PublishUntil (default NotAfter) when it is published.
	NotBefore    *time.Time `json:"not_before,omitempty"`
	PublishUntil *time.Time `json:"publish_until,omitempty"`
	NotAfter     *time.Time `json:"not_after,omitempty"`

	suites []twoway.SymmetricSuite // Suites, parsed by validate
}

// duration is a time.Duration that JSON writes as "30s".
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// Defaults of the gateway command.
const (
	gatewayDefaultHandlerTimeout  = 60 * time.Second
	gatewayDefaultOriginTimeout   = 30 * time.Second
	gatewayDefaultShutdownTimeout = 30 * time.Second
	gatewayDefaultCacheMaxAge     = time.Hour
)

// withDefaults fills in what the configuration leaves out.
func (c gatewayConfig) withDefaults() gatewayConfig {
	if c.Path == "" {
		c.Path = gateway.DefaultPath
	}
	if c.Processes == 0 {
		c.Processes = 1
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = gateway.DefaultMaxConcurrent
	}
	if c.MaxRequestLen == 0 {
		c.MaxRequestLen = gateway.DefaultMaxRequestLen
	}
	if c.MaxResponseLen == 0 {
		c.MaxResponseLen = gateway.DefaultMaxResponseLen
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = duration(gatewayDefaultHandlerTimeout)
	}
	if c.OriginTimeout == 0 {
		c.OriginTimeout = duration(gatewayDefaultOriginTimeout)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = duration(gatewayDefaultShutdownTimeout)
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = duration(gateway.ServerReadHeaderTimeout)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = duration(gateway.ServerIdleTimeout)
	}
	if c.CacheMaxAge == 0 {
		c.CacheMaxAge = duration(gatewayDefaultCacheMaxAge)
	}
	if c.EvidenceRate == 0 {
		c.EvidenceRate = float64(gateway.DefaultEvidenceRate)
	}
	if c.EvidenceBurst == 0 {
		c.EvidenceBurst = gateway.DefaultEvidenceBurst
	}
	return c
}

// validate checks the configuration before anything starts; errors are
// usage errors that name the field.
func (c *gatewayConfig) validate() error {
	if c.Listen == "" {
		return usagef("no --listen address (e.g. --listen 127.0.0.1:8080)")
	}
	if len(c.Keys) == 0 {
		return usagef("no --key given (e.g. --key 1=pkcs11:token=gw;id=%%01?module-path=...)")
	}
	seen := map[int]string{}
	for i := range c.Keys {
		k := &c.Keys[i]
		if k.ID < 0 || k.ID > 255 {
			return usagef("key %s: id %d is not a key id from 0 to 255", safeRef(k.Ref), k.ID)
		}
		if prev, dup := seen[k.ID]; dup {
			return usagef("key id %d is given twice (%s and %s): key ids must be unique", k.ID, safeRef(prev), safeRef(k.Ref))
		}
		seen[k.ID] = k.Ref
		if k.Ref == "" {
			return usagef("key %d: empty reference", k.ID)
		}
		if err := keystore.Check(k.Ref); err != nil {
			return usagef("key %d: %v", k.ID, err)
		}
		k.suites = nil
		for _, s := range k.Suites {
			suite, err := parseSuite(s)
			if err != nil {
				return usagef("key %d: %v", k.ID, err)
			}
			k.suites = append(k.suites, suite)
		}
		if k.NotBefore != nil && k.NotAfter != nil && !k.NotBefore.Before(*k.NotAfter) {
			return usagef("key %d: not_before %s is not before not_after %s", k.ID, k.NotBefore.Format(time.RFC3339), k.NotAfter.Format(time.RFC3339))
		}
		if k.PublishUntil != nil && k.NotAfter != nil && k.PublishUntil.After(*k.NotAfter) {
			return usagef("key %d: publish_until %s is after not_after %s: a key must not be published after it stops being accepted", k.ID, k.PublishUntil.Format(time.RFC3339), k.NotAfter.Format(time.RFC3339))
		}
	}
	switch {
	case c.Target == "" && len(c.AllowOrigins) == 0:
		return usagef("no origin: give --target URL (one origin for every request) or --allow-origin HOST (the request's own authority, when listed)")
	case c.Target != "" && len(c.AllowOrigins) > 0:
		return usagef("give --target or --allow-origin, not both")
	case c.Target != "":
		u, err := url.Parse(c.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return usagef("--target %q: want an http:// or https:// origin URL such as http://127.0.0.1:9000 (an optional path, no query)", c.Target)
		}
	}
	for _, h := range c.AllowOrigins {
		if h == "" || strings.ContainsAny(h, "/?#@ ") {
			return usagef("--allow-origin %q: want a host name or host:port, such as api.example.com", h)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return usagef("give --tls-cert and --tls-key together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		return usagef("--client-ca needs TLS (--tls-cert and --tls-key)")
	}
	if c.Processes < 1 || c.Processes > plugins.MaxProcesses {
		return usagef("--processes must be between 1 and %d", plugins.MaxProcesses)
	}
	for _, name := range c.PluginEnv {
		if name == "" || strings.ContainsAny(name, "= ") {
			return usagef("--plugin-env %q: want the name of an environment variable", name)
		}
	}
	if c.MaxConcurrent < 1 || c.MaxRequestLen < 1 || c.MaxResponseLen < 1 || c.HandlerTimeout <= 0 || c.OriginTimeout <= 0 || c.ShutdownTimeout <= 0 || c.CacheMaxAge <= 0 ||
		c.ReadHeaderTimeout <= 0 || c.IdleTimeout <= 0 || !(c.EvidenceRate > 0) || math.IsInf(c.EvidenceRate, 0) || c.EvidenceBurst < 1 {
		return usagef("limits and timeouts must be positive")
	}
	return nil
}

// readGatewayConfig reads a --config file: JSON, unknown fields refused.
func readGatewayConfig(path string) (gatewayConfig, error) {
	var c gatewayConfig
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, usagef("--config %s: %v", path, err)
	}
	if dec.More() {
		return c, usagef("--config %s: more than one JSON document", path)
	}
	return c.withDefaults(), nil
}

// keyFlag is one --key ID=REF.
func parseKeyFlag(s string) (gatewayKeyEntry, error) {
	idStr, ref, ok := strings.Cut(s, "=")
	n, err := strconv.ParseUint(idStr, 0, 8)
	if !ok || err != nil || ref == "" {
		return gatewayKeyEntry{}, usagef("--key %q: want ID=REF with ID a key id from 0 to 255, e.g. --key 1=tpm2:file=/etc/twoway/gw.pem", safeRef(s))
	}
	return gatewayKeyEntry{ID: int(n), Ref: ref}, nil
}

func runGateway(ctx context.Context, env *environment, args []string) int {
	c := newCmdline(env, "gateway", gatewayUsage)
	var (
		cfg        gatewayConfig
		cfgFile    = c.fs.String("config", "", "read the configuration from this JSON `file` (reloaded on SIGHUP); no other configuration flag may be given")
		keys       stringList
		origins    stringList
		pluginEnv  stringList
		handlerTO  = c.fs.Duration("handler-timeout", gatewayDefaultHandlerTimeout, "the time one request may take, its streamed response included")
		originTO   = c.fs.Duration("origin-timeout", gatewayDefaultOriginTimeout, "the time the origin may take to send its response headers")
		headerTO   = c.fs.Duration("read-header-timeout", gateway.ServerReadHeaderTimeout, "the time a client (the relay) may take to send a request's header; a slow client trickling headers holds a connection no longer")
		idleTO     = c.fs.Duration("idle-timeout", gateway.ServerIdleTimeout, "how long an idle keep-alive connection stays open")
		shutdownTO = c.fs.Duration("shutdown-timeout", gatewayDefaultShutdownTimeout, "on SIGTERM, the time requests in flight have to finish")
		maxAge     = c.fs.Duration("cache-max-age", gatewayDefaultCacheMaxAge, "Cache-Control max-age of the key configuration (keep it shorter than a rotation's overlap)")
		evRate     = c.fs.Float64("evidence-rate", float64(gateway.DefaultEvidenceRate), "fresh evidence and activations (TPM work clients cause) allowed a `second`, on average, for all clients together; beyond: 429")
		evBurst    = c.fs.Int("evidence-burst", gateway.DefaultEvidenceBurst, "fresh evidence and activations allowed at once (a token per TPM key certified and per activation: a client's verification of one TPM key takes two)")
		verbose    = c.fs.Bool("v", false, "log at debug level, the plugins' records included")
	)
	c.fs.StringVar(&cfg.Listen, "listen", "", "the `address` to serve OHTTP on, e.g. 127.0.0.1:8080")
	c.fs.Var(&keys, "key", "a key: `ID=REF`, a key id (0-255) and a key reference (repeatable)")
	c.fs.StringVar(&cfg.Target, "target", "", "forward every inner request to this origin `URL`")
	c.fs.Var(&origins, "allow-origin", "forward inner requests for this `HOST` to it (repeatable)")
	c.fs.StringVar(&cfg.TLSCert, "tls-cert", "", "serve TLS with this certificate chain (PEM `file`)")
	c.fs.StringVar(&cfg.TLSKey, "tls-key", "", "the TLS private key (PEM `file`)")
	c.fs.StringVar(&cfg.EKChain, "ek-chain", "", "add the intermediate CA certificates in this PEM `file` to every TPM key's evidence (those between its EK certificate and the maker's root that the TPM does not hold)")
	c.fs.StringVar(&cfg.ClientCA, "client-ca", "", "require relays to present a client certificate issued by these CAs (PEM `file`)")
	c.fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve /metrics, /healthz and /readyz on this `address` too")
	c.fs.StringVar(&cfg.Path, "path", gateway.DefaultPath, "the `path` that takes requests and serves the key configuration")
	c.fs.StringVar(&cfg.KeyConfigPath, "key-config-path", "", "another `path` that serves the key configuration")
	c.fs.StringVar(&cfg.Plugin, "plugin", "", "the plugin `binary` (default: this one)")
	c.fs.IntVar(&cfg.Processes, "processes", 1, "plugin processes (use 2 or more with SoftHSM)")
	c.fs.Var(&pluginEnv, "plugin-env", "also pass this environment `variable` to the plugin (repeatable)")
	c.fs.IntVar(&cfg.MaxConcurrent, "max-concurrent", gateway.DefaultMaxConcurrent, "requests served at once; beyond it: 503 with Retry-After")
	c.fs.Int64Var(&cfg.MaxRequestLen, "max-request-len", gateway.DefaultMaxRequestLen, "the largest encapsulated request, in `bytes`")
	c.fs.Int64Var(&cfg.MaxResponseLen, "max-response-len", gateway.DefaultMaxResponseLen, "the largest origin response, in `bytes`")
	c.addJSON()
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.fail(usagef("unexpected argument %q", safeRef(pos[0])))
	}
	var set []string
	c.fs.Visit(func(f *flag.Flag) { set = append(set, f.Name) })
	if *cfgFile != "" {
		for _, n := range set {
			if n != "config" && n != "v" && n != "json" {
				return c.fail(usagef("--config and --%s: with a configuration file, give every setting in the file", n))
			}
		}
		var err error
		if cfg, err = readGatewayConfig(*cfgFile); err != nil {
			return c.fail(err)
		}
	} else {
		for _, k := range keys {
			e, err := parseKeyFlag(k)
			if err != nil {
				return c.fail(err)
			}
			cfg.Keys = append(cfg.Keys, e)
		}
		cfg.AllowOrigins, cfg.PluginEnv = origins, pluginEnv
		cfg.HandlerTimeout, cfg.OriginTimeout = duration(*handlerTO), duration(*originTO)
		cfg.ShutdownTimeout, cfg.CacheMaxAge = duration(*shutdownTO), duration(*maxAge)
		cfg.ReadHeaderTimeout, cfg.IdleTimeout = duration(*headerTO), duration(*idleTO)
		cfg.EvidenceRate, cfg.EvidenceBurst = *evRate, *evBurst
		cfg = cfg.withDefaults()
	}
	if err := cfg.validate(); err != nil {
		return c.fail(err)
	}
	g := &gatewayCmd{env: env, cfgFile: *cfgFile, log: newGatewayLog(env.stderr, *verbose)}
	if err := g.run(ctx, cfg); err != nil {
		if errors.Is(err, context.Canceled) {
			return exitOK
		}
		return c.fail(err)
	}
	return exitOK
}
