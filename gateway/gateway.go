package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Media types and labels of Oblivious HTTP.
const (
	// RequestMediaType is the media type of an encapsulated request
	// (RFC 9458 section 9.2).
	RequestMediaType = "message/ohttp-req"
	// ResponseMediaType is the media type of an encapsulated response
	// (RFC 9458 section 9.3).
	ResponseMediaType = "message/ohttp-res"
	// ChunkedRequestMediaType is the media type of a chunked encapsulated
	// request (draft-ietf-ohai-chunked-ohttp-08).
	ChunkedRequestMediaType = "message/ohttp-chunked-req"
	// ChunkedResponseMediaType is the media type of a chunked encapsulated
	// response (draft-ietf-ohai-chunked-ohttp-08).
	ChunkedResponseMediaType = "message/ohttp-chunked-res"
	// KeyConfigMediaType is the media type of the published key
	// configurations (RFC 9458 section 3.2).
	KeyConfigMediaType = twoway.KeyConfigMediaType

	// RequestLabel and ResponseLabel are the HPKE info and export labels of
	// a Binary HTTP request and response (RFC 9458 section 4.1);
	// ChunkedRequestLabel and ChunkedResponseLabel those of chunked ones
	// (draft-ietf-ohai-chunked-ohttp-08 section 6). twoway's tests check
	// them against both documents' examples.
	RequestLabel         = "message/bhttp request"
	ResponseLabel        = "message/bhttp response"
	ChunkedRequestLabel  = "message/bhttp chunked request"
	ChunkedResponseLabel = "message/bhttp chunked response"

	// DefaultPath is where the gateway takes requests and publishes its
	// keys: RFC 9540's well-known gateway location.
	DefaultPath = "/.well-known/ohttp-gateway"

	// KeyProblemType is the problem type of a request whose key id is
	// unknown, whose suite the key does not accept, or that does not
	// decrypt (RFC 9458 section 5.3).
	KeyProblemType = "https://iana.org/assignments/http-problem-types#ohttp-key"
)

// Defaults of the options.
const (
	DefaultMaxRequestLen    = 16 << 20
	DefaultMaxResponseLen   = 16 << 20
	DefaultMaxHeaderLen     = 64 << 10
	DefaultHandlerTimeout   = 60 * time.Second
	DefaultMaxConcurrent    = 1024
	DefaultKeyConfigMaxAge  = time.Hour
	DefaultResponseChunkLen = 16384 // what every Chunked OHTTP receiver must accept
	DefaultRetryAfter       = time.Second
)

// config is what the options set.
type config struct {
	path, keyPath  string
	maxRequestLen  int64
	maxResponseLen int64
	maxHeaderLen   int
	handlerTimeout time.Duration
	maxConcurrent  int
	keyMaxAge      time.Duration
	respChunkLen   int
	retryAfter     time.Duration
	logger         *slog.Logger
	metrics        *Metrics
	policy         func(*http.Request) error
}

// Option configures a Handler.
type Option func(*config) error

// WithPath sets the path that takes requests and serves the key
// configuration (default [DefaultPath]).
func WithPath(p string) Option {
	return func(c *config) error {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("gateway: path %q does not start with '/'", p)
		}
		c.path = p
		return nil
	}
}

// WithKeyConfigPath adds a path that serves only the key configuration
// (GET and HEAD), besides the gateway path.
func WithKeyConfigPath(p string) Option {
	return func(c *config) error {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("gateway: key configuration path %q does not start with '/'", p)
		}
		c.keyPath = p
		return nil
	}
}

// WithKeyConfigMaxAge sets the Cache-Control max-age of the key
// configuration (default one hour, at least one second). Keep it shorter
// than the time an old key stays accepted after a new one is published, so
// that every client has seen the new key before the old one goes.
func WithKeyConfigMaxAge(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second {
			return fmt.Errorf("gateway: key configuration max-age %v is under a second", d)
		}
		c.keyMaxAge = d
		return nil
	}
}

// WithMaxRequestLen bounds the encapsulated request, chunked or not, in
// bytes (default [DefaultMaxRequestLen]). A longer one gets 413, or ends a
// chunked exchange that has started.
func WithMaxRequestLen(n int64) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("gateway: max request length %d is not positive", n)
		}
		c.maxRequestLen = n
		return nil
	}
}

// WithMaxResponseLen bounds the content of an unchunked response, which
// the gateway holds until the inner handler returns (default
// [DefaultMaxResponseLen]); past it the client gets an encapsulated 502.
// Chunked responses hold one chunk at a time and have no bound.
func WithMaxResponseLen(n int64) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("gateway: max response length %d is not positive", n)
		}
		c.maxResponseLen = n
		return nil
	}
}

// WithMaxHeaderLen bounds the Binary HTTP request's control data, its
// header section and its trailer section, each in bytes as encoded
// (default [DefaultMaxHeaderLen]). Past it the client gets an encapsulated
// 431.
func WithMaxHeaderLen(n int) Option {
	return func(c *config) error {
		if n < 64 {
			return fmt.Errorf("gateway: max header length %d is under 64 bytes", n)
		}
		c.maxHeaderLen = n
		return nil
	}
}

// WithHandlerTimeout bounds the time from the start of a request to the end
// of the inner handler's response (default [DefaultHandlerTimeout]). The
// inner handler's context ends at the deadline; a response not yet started
// is then an encapsulated 504, and a chunked response already started is
// aborted.
func WithHandlerTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("gateway: handler timeout %v is not positive", d)
		}
		c.handlerTimeout = d
		return nil
	}
}

// WithMaxConcurrent bounds the requests served at once (default
// [DefaultMaxConcurrent]). A request beyond it gets 503 with Retry-After at
// once: requests never queue.
func WithMaxConcurrent(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("gateway: max concurrent requests %d is not positive", n)
		}
		c.maxConcurrent = n
		return nil
	}
}

// WithRetryAfter sets the Retry-After of 503 responses (default one
// second, rounded up to whole seconds).
func WithRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("gateway: retry-after %v is not positive", d)
		}
		c.retryAfter = d
		return nil
	}
}

// WithResponseChunkLen sets the largest plaintext of a chunk of a chunked
// response, 64 to 16384 bytes (default 16384, what every Chunked OHTTP
// receiver must accept); other lengths are an error of New.
func WithResponseChunkLen(n int) Option {
	return func(c *config) error {
		if n < 64 || n > 16384 {
			return fmt.Errorf("gateway: response chunk length %d out of range [64, 16384]", n)
		}
		c.respChunkLen = n
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()). Records carry
// outcomes, key ids, sizes and durations, never plaintext, keys or
// secrets.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("gateway: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithMetrics records the handler's metrics in m. Register m (a
// prometheus.Collector) with the registry the metrics listener serves.
func WithMetrics(m *Metrics) Option {
	return func(c *config) error {
		if m == nil {
			return errors.New("gateway: nil metrics")
		}
		c.metrics = m
		return nil
	}
}

// WithTargetPolicy sets a check of each decapsulated request before the
// inner handler sees it, typically of its scheme and authority. A request
// it returns an error for gets an encapsulated 403 whose detail is the
// error's text (which only the client can read).
func WithTargetPolicy(policy func(*http.Request) error) Option {
	return func(c *config) error {
		c.policy = policy
		return nil
	}
}

// Handler is the gateway. It is safe for concurrent use; it keeps no state
// between requests but the keys it was given, so any number of gateways
// with the same keys can serve behind a load balancer.
type Handler struct {
	keys  *twoway.Gateway
	inner http.Handler
	cfg   config
	sem   chan struct{}
}

// New returns a gateway that opens requests with keys and serves them with
// inner. Keys added to or removed from keys later take effect at once, in
// the requests accepted and in the key configuration published.
func New(keys *twoway.Gateway, inner http.Handler, opts ...Option) (*Handler, error) {
	if keys == nil {
		return nil, errors.New("gateway: nil keys")
	}
	if inner == nil {
		return nil, errors.New("gateway: nil inner handler")
	}
	c := config{
		path:           DefaultPath,
		maxRequestLen:  DefaultMaxRequestLen,
		maxResponseLen: DefaultMaxResponseLen,
		maxHeaderLen:   DefaultMaxHeaderLen,
		handlerTimeout: DefaultHandlerTimeout,
		maxConcurrent:  DefaultMaxConcurrent,
		keyMaxAge:      DefaultKeyConfigMaxAge,
		respChunkLen:   DefaultResponseChunkLen,
		retryAfter:     DefaultRetryAfter,
		logger:         slog.Default(),
	}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("gateway: nil option")
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.keyPath == c.path {
		c.keyPath = ""
	}
	if c.metrics == nil {
		c.metrics = NewMetrics() // recorded, never registered
	}
	return &Handler{keys: keys, inner: inner, cfg: c, sem: make(chan struct{}, c.maxConcurrent)}, nil
}

// ServeHTTP serves the gateway path and the key configuration path; see
// the package documentation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case h.cfg.path:
		switch r.Method {
		case http.MethodPost:
			h.serveRequest(w, r)
		case http.MethodGet, http.MethodHead:
			h.serveKeys(w, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			h.outerProblem(w, r, outcomeMethod, http.StatusMethodNotAllowed, "", "method not allowed",
				fmt.Sprintf("%s takes POST (requests) and GET or HEAD (the key configuration)", h.cfg.path))
		}
	case h.cfg.keyPath:
		if h.cfg.keyPath != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			h.serveKeys(w, r)
			return
		}
		if h.cfg.keyPath == "" {
			h.notFound(w, r)
			return
		}
		w.Header().Set("Allow", "GET, HEAD")
		h.outerProblem(w, r, outcomeMethod, http.StatusMethodNotAllowed, "", "method not allowed",
			fmt.Sprintf("%s serves the key configuration to GET and HEAD", h.cfg.keyPath))
	default:
		h.notFound(w, r)
	}
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.outerProblem(w, r, outcomeNotFound, http.StatusNotFound, "", "not found",
		fmt.Sprintf("this gateway serves %s", h.cfg.path))
}

// serveKeys publishes the key configuration.
func (h *Handler) serveKeys(w http.ResponseWriter, r *http.Request) {
	if !accepts(r.Header.Values("Accept"), KeyConfigMediaType) {
		h.outerProblem(w, r, outcomeNotAcceptable, http.StatusNotAcceptable, "", "not acceptable",
			"the key configuration is "+KeyConfigMediaType)
		return
	}
	body, err := h.keys.MarshalKeyConfigs()
	if err != nil || len(body) == 0 {
		w.Header().Set("Retry-After", h.retryAfter())
		h.outerProblem(w, r, outcomeNoKeys, http.StatusServiceUnavailable, "", "no keys", "the gateway holds no keys")
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	hdr := w.Header()
	hdr.Set("Content-Type", KeyConfigMediaType)
	hdr.Set("Cache-Control", "max-age="+strconv.Itoa(int(h.cfg.keyMaxAge/time.Second)))
	hdr.Set("ETag", etag)
	hdr.Set("Vary", "Accept")
	h.cfg.metrics.request(outcomeKeyConfig).Inc()
	if matchesETag(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// accepts reports whether Accept header values allow mediaType (RFC 9110
// section 12.5.1); no Accept at all allows anything.
func accepts(values []string, mediaType string) bool {
	if len(values) == 0 {
		return true
	}
	typ, _, _ := strings.Cut(mediaType, "/")
	for _, v := range values {
		for _, rng := range strings.Split(v, ",") {
			rng = strings.TrimSpace(rng)
			if rng == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(rng)
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			if mt == mediaType || mt == "*/*" || mt == typ+"/*" {
				return true
			}
		}
	}
	return false
}

// matchesETag reports whether If-None-Match values match etag.
func matchesETag(values []string, etag string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}

func (h *Handler) retryAfter() string {
	return strconv.Itoa(int((h.cfg.retryAfter + time.Second - 1) / time.Second))
}
