package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/gateway/client"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

const requestUsage = `Usage: twoway-hsm request --gateway URL [--chunked] [flags] TARGET-URL

Sends one request through an Oblivious HTTP gateway as a client would, and
prints the response: a check of a deployment from outside.

It fetches the gateway's key configuration (GET URL with Accept:
application/ohttp-keys), or reads a pinned one with --key-config FILE (an
application/ohttp-keys body, as key-config --format binary writes it); picks
the first key configuration it can use, or --key-id N, with that key's first
suite; encodes the request for TARGET-URL as Binary HTTP (RFC 9292); seals it
to the key (RFC 9458, or Chunked OHTTP with --chunked); POSTs it to the
gateway, or to --relay URL, which forwards it; and opens the response.

A --gateway URL without a path means its /.well-known/ohttp-gateway; a
--relay URL is used as given. Redirects are not followed.

The request is GET, or POST when -d, --data or --data-file is given (-X sets
any method); -H 'Name: value' adds a header field (repeatable). With
--chunked the content is streamed: --data-file - sends standard input as it
is read.

Output: the response content on stdout (written as chunks arrive with
--chunked) and its status line on stderr; with -i the status line and the
header fields go to stdout before the content. --json prints one JSON
object: status, headers, trailers, body (as text, or body_base64 when it is
not UTF-8), key_id, suite, chunked and timings in milliseconds.

Exit status: 0 when the response arrived, whatever its status (with --fail:
1 for a status of 400 or more, after printing it, like curl -f); 1 when the
exchange failed: fetching the keys, an outer error from the gateway or the
relay (reported with its problem details: an unknown key means fetching the
key configuration again), a response that does not open or ends early;
2 for a usage error.

Examples:
  twoway-hsm request --gateway https://gw.example https://origin.example/healthz
  twoway-hsm request --gateway http://127.0.0.1:8080 -i -X PUT -H 'Content-Type: application/json' -d '{"a":1}' https://origin.example/items/1
  tail -f events | twoway-hsm request --gateway https://gw.example --chunked --data-file - https://origin.example/ingest
  twoway-hsm request --relay https://relay.example/gw --key-config ohttp-keys --json https://origin.example/
  twoway-hsm request --gateway https://gw.internal:8443 --ca-cert ca.pem --client-cert relay.pem --client-key relay.key https://origin.example/
`

// Bounds of what the request command reads.
const (
	maxRequestContent = 64 << 20 // unchunked request content (--chunked streams)
	maxJSONBody       = 16 << 20 // response content kept for --json
	maxResponseHeader = 256 << 10
	defaultTimeout    = 60 * time.Second
	fetchTimeout      = 30 * time.Second
)

// optString is a string flag that records whether it was given.
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string     { return o.v }
func (o *optString) Set(v string) error { o.v, o.set = v, true; return nil }

// tlsFlags configure the TLS client of commands that reach a gateway or
// a relay.
type tlsFlags struct {
	caCert, clientCert, clientKey string
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.caCert, "ca-cert", "", "trust only the CA certificates in this PEM `FILE` for https (default: the system's)")
	fs.StringVar(&t.clientCert, "client-cert", "", "present the client certificate in this PEM `FILE` (mutual TLS; with --client-key)")
	fs.StringVar(&t.clientKey, "client-key", "", "the private key of --client-cert, a PEM `FILE`")
}

// check reports a usage error in the TLS flags.
func (t *tlsFlags) check() error {
	if (t.clientCert == "") != (t.clientKey == "") {
		return usagef("--client-cert and --client-key go together")
	}
	return nil
}

// httpClient returns a client with the TLS flags' settings that follows
// no redirects.
func (t *tlsFlags) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.caCert != "" {
		b, err := os.ReadFile(t.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--ca-cert %s: no PEM certificate in the file", t.caCert)
		}
		cfg.RootCAs = pool
	}
	if t.clientCert != "" {
		cert, err := tls.LoadX509KeyPair(t.clientCert, t.clientKey)
		if err != nil {
			return nil, fmt.Errorf("--client-cert %s and --client-key %s: %w", t.clientCert, t.clientKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr.TLSClientConfig = cfg
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// gatewayURL checks a gateway's URL, which must be http or https; one
// without a path means the gateway's well-known path.
func gatewayURL(flagName, s string) (*url.URL, error) {
	u, err := checkURL(flagName, s)
	if err != nil {
		return nil, err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path, u.RawPath = gateway.DefaultPath, ""
	}
	return u, nil
}

// checkURL parses an absolute http or https URL.
func checkURL(flagName, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, usagef("%s %q: want an http or https URL, such as https://gw.example", flagName, redactURL(s))
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// redactURL is a URL fit for messages: without a password.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}

// fetchKeyConfigs gets a gateway's application/ohttp-keys body.
func fetchKeyConfigs(ctx context.Context, hc *http.Client, u *url.URL) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	body, err := client.FetchKeyConfigList(ctx, hc, u.String())
	var oe *client.OuterError
	var me *client.MediaTypeError
	switch {
	case errors.As(err, &oe):
		return nil, outerErrorOf(oe, "fetch the key configuration: "+u.Redacted(), false)
	case errors.As(err, &me):
		return nil, withHint(fmt.Errorf("fetch the key configuration: %s answered with %s, not %s", me.URL, orNone(me.Got), me.Want),
			"is this the URL of an OHTTP gateway? A URL without a path means its /.well-known/ohttp-gateway")
	case err != nil:
		return nil, clientError{err}
	}
	return body, nil
}

// readKeyConfigFile reads a pinned application/ohttp-keys body.
func readKeyConfigFile(path string) ([]byte, error) {
	return readFileBounded(nil, path, client.MaxKeyConfigLen, "a key configuration")
}

// keyConfigFileHint says what may be wrong with a key configuration file
// that does not parse: a hex or base64 one, which key-config prints by
// default.
func keyConfigFileHint(b []byte) string {
	t := bytes.TrimSpace(b)
	if len(t) > 0 && bytes.IndexFunc(t, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '+' || r == '/' || r == '=')
	}) < 0 {
		return "the file looks like hex or base64 text: key configuration files are the binary application/ohttp-keys body (twoway-hsm key-config --format binary --out FILE)"
	}
	return "a key configuration file is an application/ohttp-keys body (twoway-hsm key-config --format binary --out FILE)"
}

// listedConfig is one configuration of a key configuration list, or why
// this tool cannot read it.
type listedConfig struct {
	id  byte
	cfg twoway.KeyConfig
	err error
}

// splitKeyConfigs reads an application/ohttp-keys body leniently: a
// configuration with an algorithm this tool does not know is kept with
// its error, so that a client can still use the others. Only the list's
// framing must be valid.
func splitKeyConfigs(b []byte) ([]listedConfig, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("the key configuration is empty")
	}
	var out []listedConfig
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("the key configuration has a stray byte after configuration %d", len(out))
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n == 0 || n > len(b) {
			return nil, fmt.Errorf("the key configuration's configuration %d claims %d bytes, and %d remain", len(out), n, len(b))
		}
		var l listedConfig
		l.id = b[0]
		l.err = l.cfg.UnmarshalBinary(b[:n])
		out = append(out, l)
		b = b[n:]
	}
	return out, nil
}

// chooseKey picks the configuration to seal to: the one with key id want
// (when want >= 0), else the first this tool can encapsulate to.
func chooseKey(list []listedConfig, want int) (twoway.KeyConfig, error) {
	var ids, reasons []string
	for _, l := range list {
		ids = append(ids, strconv.Itoa(int(l.id)))
		if want >= 0 && int(l.id) != want {
			continue
		}
		err := l.err
		if err == nil && !l.cfg.KEM.IsValid() {
			err = fmt.Errorf("this client cannot encapsulate to %v", kem.ID(l.cfg.KEM))
		}
		if err == nil {
			return l.cfg, nil
		}
		reasons = append(reasons, fmt.Sprintf("key id %d: %v", l.id, err))
	}
	if want >= 0 && len(reasons) == 0 {
		return twoway.KeyConfig{}, fmt.Errorf("key id %d is not in the key configuration (it has key ids %s)", want, strings.Join(ids, ", "))
	}
	return twoway.KeyConfig{}, fmt.Errorf("no key configuration this tool can use: %s", strings.Join(reasons, "; "))
}

// outerError is an outer response other than the one expected: an error
// of the gateway or the relay before decapsulation, and who gave it.
type outerError struct {
	*client.OuterError
	what   string // "the gateway at URL"
	pinned bool   // the key configuration came from --key-config
}

func (e *outerError) Error() string {
	s := e.what + " answered " + e.Describe()
	if e.Type == gateway.KeyProblemType {
		s += " [ohttp-key]"
	}
	return s
}

func (e *outerError) Unwrap() error { return e.OuterError }

// hint says what to do about the outer error.
func (e *outerError) hint() string {
	switch {
	case e.Type == gateway.KeyProblemType && e.pinned:
		return "the gateway does not accept the pinned key configuration: fetch it again (drop --key-config, or twoway-hsm key-config --merge GATEWAY-URL --format binary --out FILE)"
	case e.Type == gateway.KeyProblemType:
		return "the gateway refused a key it published: fetch the key configuration again; if several gateways serve behind a load balancer or relay, it must route each request by key id (its first byte) to the gateway that holds that key"
	case e.Status == http.StatusServiceUnavailable && e.RetryAfter != "":
		return "the gateway is overloaded or cannot reach its key: retry after " + e.RetryAfter + " s"
	case e.Status == http.StatusServiceUnavailable:
		return "the gateway is overloaded or cannot reach its key: retry later"
	case e.Status >= 300 && e.Status < 400 && e.Location != "":
		return "redirects are not followed: give the URL it redirects to"
	case e.Status == http.StatusNotFound, e.Status == http.StatusMethodNotAllowed, e.Status == http.StatusUnsupportedMediaType,
		e.Status == http.StatusNotAcceptable:
		return "is this the URL of an OHTTP gateway (or of a relay to one)? A gateway URL without a path means its /.well-known/ohttp-gateway"
	case e.Status == http.StatusRequestEntityTooLarge:
		return "the request is larger than the gateway accepts"
	case e.Status == http.StatusUnauthorized, e.Status == http.StatusForbidden:
		return "the server refused this client: a relay or gateway may require a client certificate (--client-cert, --client-key)"
	}
	return ""
}

// outerErrorOf is an outer error with who gave it and its hint.
func outerErrorOf(oe *client.OuterError, what string, pinned bool) error {
	e := &outerError{OuterError: oe, what: what, pinned: pinned}
	return withHint(e, e.hint())
}

// requestView is the --json output of request.
type requestView struct {
	Status        int                 `json:"status"`
	StatusText    string              `json:"status_text"`
	Informational []informationalView `json:"informational,omitempty"`
	Headers       []fieldView         `json:"headers"`
	Trailers      []fieldView         `json:"trailers,omitempty"`
	// Body is the content when it is UTF-8 text; BodyBase64 otherwise.
	Body       *string `json:"body,omitempty"`
	BodyBase64 string  `json:"body_base64,omitempty"`
	BodyLen    int     `json:"body_len"`

	KeyID   int        `json:"key_id"`
	KEM     string     `json:"kem"`
	KDF     string     `json:"kdf"`
	AEAD    string     `json:"aead"`
	Chunked bool       `json:"chunked"`
	Gateway string     `json:"gateway,omitempty"`
	Relay   string     `json:"relay,omitempty"`
	Timing  timingView `json:"timing"`
	// Error is set with --fail when the status is 400 or more.
	Error string `json:"error,omitempty"`
}

type fieldView struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type informationalView struct {
	Status  int         `json:"status"`
	Headers []fieldView `json:"headers"`
}

// timingView are the durations of the exchange, in milliseconds.
type timingView struct {
	// KeyConfig is the fetch of the key configuration (0 when pinned).
	KeyConfig float64 `json:"key_config_ms"`
	// Outer is from sending the request to the outer response's header.
	Outer float64 `json:"outer_ms"`
	// Head is from sending the request to the inner response's head.
	Head float64 `json:"head_ms"`
	// Total is from sending the request to the end of the response.
	Total float64 `json:"total_ms"`
}

func fieldsView(fs []bhttp.Field) []fieldView {
	out := make([]fieldView, 0, len(fs))
	for _, f := range fs {
		out = append(out, fieldView{Name: f.Name, Value: f.Value})
	}
	return out
}

// requestArgs are the request command's settings.
type requestArgs struct {
	gateway, relay *url.URL
	keyConfig      string
	keyID          int
	chunked        bool
	target         *url.URL
	method         string
	header         []bhttp.Field
	data           optString
	dataFile       string
	include        bool
	fail           bool
	verbose        bool
	timeout        time.Duration
	tls            tlsFlags
}

func runRequest(ctx context.Context, env *environment, args []string) int {
	c := newCmdline(env, "request", requestUsage)
	var a requestArgs
	var gw, relay string
	var headers stringList
	c.fs.StringVar(&gw, "gateway", "", "the gateway's `URL`: its key configuration, and where requests go without --relay")
	c.fs.StringVar(&relay, "relay", "", "POST the request to this relay `URL`, which forwards it to the gateway")
	c.fs.StringVar(&a.keyConfig, "key-config", "", "use the key configuration in this `FILE` (application/ohttp-keys, binary) instead of fetching it")
	c.fs.IntVar(&a.keyID, "key-id", -1, "seal to the key configuration with this key id `N` (default: the first usable one)")
	c.fs.BoolVar(&a.chunked, "chunked", false, "send a Chunked OHTTP request and stream the response")
	c.fs.StringVar(&a.method, "X", "", "the request `METHOD` (default GET, or POST with data)")
	c.fs.Var(&headers, "H", "add a request header field `'Name: value'` (repeatable)")
	c.fs.Var(&headers, "header", "same as -H")
	c.fs.Var(&a.data, "d", "send this `DATA` as the request content")
	c.fs.Var(&a.data, "data", "same as -d")
	c.fs.StringVar(&a.dataFile, "data-file", "", "send the content of this `FILE` (- for standard input)")
	c.fs.BoolVar(&a.include, "i", false, "print the status line and header fields before the content")
	c.fs.BoolVar(&a.include, "include", false, "same as -i")
	c.fs.BoolVar(&a.fail, "fail", false, "exit 1 when the response status is 400 or more")
	c.fs.BoolVar(&a.verbose, "v", false, "describe the exchange on stderr: key, URLs, outer response, timings")
	c.fs.DurationVar(&a.timeout, "timeout", defaultTimeout, "give up on the whole exchange after this `DURATION` (0: never)")
	a.tls.register(c.fs)
	c.addJSON()
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if err := a.check(gw, relay, headers, pos); err != nil {
		return c.fail(err)
	}
	if err := a.tls.check(); err != nil {
		return c.fail(err)
	}
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	return a.run(ctx, c)
}

// check checks the command line.
func (a *requestArgs) check(gw, relay string, headers []string, pos []string) error {
	switch {
	case len(pos) == 0:
		return usagef("missing TARGET-URL, the URL of the request inside (e.g. https://origin.example/)")
	case len(pos) > 1:
		return usagef("unexpected argument %q after TARGET-URL", pos[1])
	case gw == "" && relay == "":
		return usagef("no --gateway URL given")
	case gw == "" && a.keyConfig == "":
		return usagef("--relay without --gateway needs --key-config FILE: the key configuration comes from the gateway")
	case a.keyID < -1 || a.keyID > 255:
		return usagef("--key-id %d: want a key id from 0 to 255", a.keyID)
	case a.data.set && a.dataFile != "":
		return usagef("give -d/--data or --data-file, not both")
	case a.timeout < 0:
		return usagef("--timeout %v is negative", a.timeout)
	}
	var err error
	if gw != "" {
		if a.gateway, err = gatewayURL("--gateway", gw); err != nil {
			return err
		}
	}
	if relay != "" {
		if a.relay, err = checkURL("--relay", relay); err != nil {
			return err
		}
	}
	t, err := url.Parse(pos[0])
	if err != nil || t.Scheme == "" || t.Host == "" || t.Opaque != "" {
		return usagef("TARGET-URL %q: want an absolute URL with a scheme and an authority, e.g. https://origin.example/path", redactURL(pos[0]))
	}
	if t.User != nil {
		return usagef("TARGET-URL: user information in the URL is not sent; give -H 'Authorization: ...' instead")
	}
	t.Fragment, t.RawFragment = "", ""
	a.target = t
	if a.method == "" {
		a.method = http.MethodGet
		if a.data.set || a.dataFile != "" {
			a.method = http.MethodPost
		}
	}
	if !validToken(a.method) {
		return usagef("-X %q is not an HTTP method", a.method)
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || !validToken(name) || strings.HasPrefix(name, ":") {
			return usagef("-H %q: want 'Name: value'", h)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return usagef("-H %q: the value has a line break or NUL", name)
		}
		a.header = append(a.header, bhttp.Field{Name: strings.ToLower(name), Value: value})
	}
	if _, err := a.head(); err != nil {
		return usagef("the request cannot be encoded: %v", err)
	}
	return nil
}

// validToken reports whether s is an HTTP token (RFC 9110 section 5.6.2).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// inner returns the Binary HTTP request's control data and header.
func (a *requestArgs) inner(f bhttp.Framing) *bhttp.Request {
	path := a.target.RequestURI()
	return &bhttp.Request{Framing: f, Method: a.method, Scheme: a.target.Scheme, Authority: a.target.Host, Path: path, Header: a.header}
}

// head encodes the head of an indeterminate-length request.
func (a *requestArgs) head() ([]byte, error) {
	return bhttp.AppendRequestHead(nil, a.inner(bhttp.IndeterminateLengthRequest))
}

// content opens the request content: nil for none.
func (a *requestArgs) content(env *environment) (io.Reader, func(), error) {
	switch {
	case a.data.set:
		return strings.NewReader(a.data.v), func() {}, nil
	case a.dataFile == "-":
		return env.stdin, func() {}, nil
	case a.dataFile != "":
		f, err := os.Open(a.dataFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--data-file: %w", err)
		}
		return f, func() { f.Close() }, nil
	}
	return nil, func() {}, nil
}

// message returns the plaintext to seal: a whole known-length request, or
// with --chunked an indeterminate-length one streamed from the content.
func (a *requestArgs) message(env *environment) (io.Reader, func(), error) {
	src, closeSrc, err := a.content(env)
	if err != nil {
		return nil, nil, err
	}
	if a.chunked {
		head, err := a.head()
		if err != nil {
			closeSrc()
			return nil, nil, err
		}
		return client.StreamRequest(head, src), closeSrc, nil
	}
	defer closeSrc()
	var content []byte
	if src != nil {
		content, err = io.ReadAll(io.LimitReader(src, maxRequestContent+1))
		if err != nil {
			return nil, nil, fmt.Errorf("read the request content: %w", err)
		}
		if len(content) > maxRequestContent {
			return nil, nil, withHint(fmt.Errorf("the request content is over %d MiB", maxRequestContent>>20), "add --chunked to stream it")
		}
	}
	msg, err := bhttp.AppendRequest(nil, a.inner(bhttp.KnownLengthRequest), content, nil)
	if err != nil {
		return nil, nil, err
	}
	return bytes.NewReader(msg), func() {}, nil
}

// run performs the exchange and prints the response.
func (a *requestArgs) run(ctx context.Context, c *cmdline) int {
	env := c.env
	logf := func(format string, args ...any) {
		if a.verbose {
			fmt.Fprintf(env.stderr, "* "+format+"\n", args...)
		}
	}
	hc, err := a.tls.httpClient()
	if err != nil {
		return c.fail(err)
	}
	defer hc.CloseIdleConnections()

	// The key configuration.
	var body []byte
	var keyTime time.Duration
	if a.keyConfig != "" {
		if body, err = readKeyConfigFile(a.keyConfig); err != nil {
			return c.fail(fmt.Errorf("--key-config: %w", err))
		}
	} else {
		t0 := time.Now()
		if body, err = fetchKeyConfigs(ctx, hc, a.gateway); err != nil {
			return c.fail(err)
		}
		keyTime = time.Since(t0)
		logf("key configuration from %s: %d bytes in %s", a.gateway.Redacted(), len(body), fmtDuration(keyTime))
	}
	list, err := splitKeyConfigs(body)
	if err != nil {
		if a.keyConfig != "" {
			return c.fail(withHint(fmt.Errorf("--key-config %s: %w", a.keyConfig, err), keyConfigFileHint(body)))
		}
		return c.fail(fmt.Errorf("the key configuration from %s: %w", a.gateway.Redacted(), err))
	}
	kc, err := chooseKey(list, a.keyID)
	if err != nil {
		return c.fail(err)
	}
	suite := kc.Suites[0]
	logf("key id %d: %s, %s/%s", kc.KeyID, kemShort(kem.ID(kc.KEM)), kdfName(suite.KDF), aeadName(suite.AEAD))

	// The request.
	msg, closeMsg, err := a.message(env)
	if err != nil {
		return c.fail(err)
	}
	defer closeMsg()
	post, what := a.gateway, "the gateway at "
	if a.relay != nil {
		post, what = a.relay, "the relay at "
	}
	what += post.Redacted()
	mediaType, respType := gateway.RequestMediaType, gateway.ResponseMediaType
	if a.chunked {
		mediaType, respType = gateway.ChunkedRequestMediaType, gateway.ChunkedResponseMediaType
	}
	logf("POST %s (%s, key id %d)", post.Redacted(), mediaType, kc.KeyID)
	var firstByte atomic.Int64 // UnixNano; set by the transport's goroutine
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { firstByte.Store(time.Now().UnixNano()) }})
	tr := &client.Transport{URL: post.String(), Config: kc, HTTP: hc, Limits: bhttp.Limits{MaxFieldSectionLen: maxResponseHeader}}
	t0 := time.Now()
	inner, err := tr.Exchange(ctx, msg, a.chunked)
	if err != nil {
		return c.fail(a.exchangeError(err, what))
	}
	defer inner.Close()
	outerTime := time.Since(t0) // the head has arrived, so the first byte too
	if fb := firstByte.Load(); fb != 0 {
		outerTime = time.Unix(0, fb).Sub(t0)
	}
	logf("outer response 200 OK (%s) in %s", respType, fmtDuration(outerTime))

	// The response.
	headTime := time.Since(t0)
	v := requestView{Status: inner.Status, StatusText: http.StatusText(inner.Status), Headers: fieldsView(inner.Header),
		KeyID: int(kc.KeyID), KEM: kemShort(kem.ID(kc.KEM)), KDF: kdfName(suite.KDF), AEAD: aeadName(suite.AEAD), Chunked: a.chunked,
		Timing: timingView{KeyConfig: millis(keyTime), Outer: millis(outerTime), Head: millis(headTime)}}
	if a.gateway != nil {
		v.Gateway = a.gateway.Redacted()
	}
	if a.relay != nil {
		v.Relay = a.relay.Redacted()
	}
	for _, i := range inner.Informational {
		v.Informational = append(v.Informational, informationalView{Status: i.Status, Headers: fieldsView(i.Header)})
	}
	status := statusLine(inner.Status)

	var n int64
	if c.json {
		content, err := io.ReadAll(io.LimitReader(inner.Body, maxJSONBody+1))
		if err != nil {
			return c.fail(responseError(err))
		}
		if len(content) > maxJSONBody {
			return c.fail(withHint(fmt.Errorf("the response content is over %d MiB, more than --json holds", maxJSONBody>>20), "drop --json to stream it to stdout"))
		}
		n = int64(len(content))
		if utf8.Valid(content) {
			s := string(content)
			v.Body = &s
		} else {
			v.BodyBase64 = base64.StdEncoding.EncodeToString(content)
		}
	} else {
		if a.include {
			var sb strings.Builder
			for _, i := range inner.Informational {
				writeHead(&sb, statusLine(i.Status), i.Header)
			}
			writeHead(&sb, status, inner.Header)
			if _, err := io.WriteString(env.stdout, sb.String()); err != nil {
				return c.fail(err)
			}
		} else {
			fmt.Fprintln(env.stderr, status)
		}
		// io.Copy writes each chunk as the opener delivers it.
		n, err = io.Copy(errWriter{env.stdout}, readerOnly{inner.Body})
		if err != nil {
			var we *writeError
			if errors.As(err, &we) {
				return c.fail(we)
			}
			return c.fail(responseError(err))
		}
	}
	v.BodyLen = int(n)
	v.Trailers = fieldsView(inner.Body.Trailer())
	v.Timing.Total = millis(time.Since(t0))
	logf("response %s, %d bytes of content, %d trailer fields, head in %s, all in %s", status, n, len(v.Trailers),
		fmtDuration(headTime), fmtDuration(time.Since(t0)))
	failed := a.fail && inner.Status >= 400
	if failed {
		v.Error = fmt.Sprintf("the response status is %s (--fail)", status)
	}
	if c.json {
		if err := writeJSON(env.stdout, v); err != nil {
			return c.fail(err)
		}
	}
	if failed {
		fmt.Fprintf(env.stderr, "twoway-hsm request: %s\n", v.Error)
		return exitFailure
	}
	return exitOK
}

// exchangeError is what the request command says of a failed exchange
// with what (the gateway or the relay at URL).
func (a *requestArgs) exchangeError(err error, what string) error {
	var oe *client.OuterError
	var me *client.MediaTypeError
	switch {
	case errors.As(err, &oe):
		return outerErrorOf(oe, what, a.keyConfig != "")
	case errors.As(err, &me):
		return fmt.Errorf("%s answered 200 with %s, not %s", what, orNone(me.Got), me.Want)
	}
	return responseError(err)
}

// clientError is an error of package client as this command says it:
// without the package's prefix.
type clientError struct{ err error }

func (e clientError) Error() string { return strings.TrimPrefix(e.err.Error(), "client: ") }
func (e clientError) Unwrap() error { return e.err }

// readerOnly hides a reader's other methods, so that io.Copy writes what
// each Read returns at once.
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(p []byte) (int, error) { return r.r.Read(p) }

// writeError is a failure to write the output (not the exchange's).
type writeError struct{ err error }

func (e *writeError) Error() string { return "write the output: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// errWriter marks its writer's errors as writeErrors.
type errWriter struct{ w io.Writer }

func (w errWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// statusLine is "200 OK".
func statusLine(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// writeHead writes a status line, the field lines and a blank line.
func writeHead(w io.Writer, status string, fields []bhttp.Field) {
	fmt.Fprintln(w, status)
	for _, f := range fields {
		fmt.Fprintf(w, "%s: %s\n", f.Name, f.Value)
	}
	fmt.Fprintln(w)
}

// responseError describes a response that does not open or ends early.
func responseError(err error) error {
	switch {
	case errors.Is(err, twoway.ErrTruncated), errors.Is(err, bhttp.ErrTruncated), errors.Is(err, io.ErrUnexpectedEOF):
		return withHint(fmt.Errorf("the response ended early: %w", err),
			"the gateway ended the response stream without its end (its origin failed or timed out mid-response), or the connection was cut: the content printed is incomplete")
	case errors.Is(err, twoway.ErrAuthentication):
		return withHint(fmt.Errorf("the response does not open: %w", err),
			"something between the gateway and this client changed the response")
	case errors.Is(err, context.DeadlineExceeded):
		return withHint(fmt.Errorf("the exchange: %w", err), "the exchange took longer than --timeout")
	}
	return clientError{err}
}
