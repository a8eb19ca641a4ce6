package gateway

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The evidence endpoints, below the gateway path (see EvidenceHandler).
const (
	// EvidenceSuffix is appended to the gateway path for the evidence
	// container: /.well-known/ohttp-gateway/evidence.
	EvidenceSuffix = "/evidence"
	// ActivateSuffix is appended to the gateway path for credential
	// activation: /.well-known/ohttp-gateway/evidence/activate.
	ActivateSuffix = "/evidence/activate"
	// ChallengeMediaType is the media type of a challenge and an answer.
	ChallengeMediaType = "application/json"
)

// Defaults of the evidence handler.
const (
	// DefaultEvidenceRate and DefaultEvidenceBurst bound the TPM
	// operations clients may cause (fresh evidence, activation): one a
	// second on average, ten at once (a client's verification,
	// attest/attesthttp.Verify, takes one for each TPM key and one for
	// each TPM's activation: two for a gateway with one TPM key).
	DefaultEvidenceRate  rate.Limit = 1
	DefaultEvidenceBurst            = 10
	// DefaultEvidenceTimeout bounds one TPM operation.
	DefaultEvidenceTimeout = 30 * time.Second
	// evidenceRetryFailed is how long a failure to collect a key's
	// cached evidence stands before a GET tries again.
	evidenceRetryFailed = 30 * time.Second
)

// Attester proves that a key lives in a TPM: a key from package plugins
// (*plugins.Key) is one, reaching the plugin's Attest and Activate calls.
// A key that cannot be attested returns an error wrapping
// attest.ErrNotAttestable.
type Attester interface {
	Attest(ctx context.Context, cfg twoway.KeyConfig, nonce []byte) (*attest.Evidence, error)
	Activate(ctx context.Context, c *attest.Challenge) (*attest.Answer, error)
}

// EvidenceHandler serves the evidence that the gateway's keys live in a
// TPM, next to the key configuration, and answers credential-activation
// challenges with the keys' TPMs (package attest, and package
// attest/attesthttp for clients). Under the gateway path P (default
// [DefaultPath]):
//
//   - GET or HEAD P/evidence: the evidence container
//     (attest.EvidenceSetMediaType, see attest.ParseEvidenceSet), one
//     entry for each key the twoway.Gateway publishes, by key id: the
//     key's evidence, made for the key configuration exactly as published
//     and no nonce, collected when the handler was made (at the gateway's
//     start and each reload) and cached; or, for a key that cannot be
//     attested (PKCS#11, soft), "not_attestable" and the reason.
//   - GET P/evidence?nonce=HEX (1 to 64 bytes): fresh evidence bound to
//     the client's nonce, made by the TPMs for this request. Rate-limited.
//   - POST P/evidence/activate, a challenge (application/json, from
//     attest.MakeChallenge, at most attest.MaxChallengeSize bytes): the
//     answer (application/json) of the TPM whose EK and AK the challenge
//     names, found among the cached evidence (or the key id of
//     ?key_id=N). Rate-limited.
//
// The rate limit ([WithEvidenceLimiter]) is one token bucket for both
// kinds of TPM work, shared by every client (behind a relay, clients are
// indistinguishable): fresh evidence takes a token for each published key
// a TPM certifies (up to the bucket's size; keys known not to be
// attestable take none), activation one; past it the
// answer is 429 with Retry-After. Bad
// input gets 400 with a problem (application/problem+json) that says
// what was wrong; a TPM that cannot be reached 503.
type EvidenceHandler struct {
	keys      *twoway.Gateway
	attesters map[byte]Attester
	cfg       evidenceConfig
	// The two endpoints' paths, joined once: Handles runs for every
	// request of a server that routes by it, and a concatenation this long
	// allocates.
	evidencePath, activatePath string

	mu    sync.Mutex
	cache map[string]*cachedEvidence // by the marshalled key configuration
}

type cachedEvidence struct {
	ev            *attest.Evidence
	notAttestable bool
	problem       string
	at            time.Time
}

type evidenceConfig struct {
	path    string
	limiter *rate.Limiter
	timeout time.Duration
	maxAge  time.Duration
	logger  *slog.Logger
	metrics *Metrics
	chain   [][]byte
}

// EvidenceOption configures an EvidenceHandler.
type EvidenceOption func(*evidenceConfig) error

// WithEvidencePath sets the gateway path the endpoints are under (default
// [DefaultPath]).
func WithEvidencePath(p string) EvidenceOption {
	return func(c *evidenceConfig) error {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("gateway: evidence path %q does not start with '/'", p)
		}
		c.path = strings.TrimSuffix(p, "/")
		return nil
	}
}

// WithEvidenceLimiter sets the rate limit of fresh evidence and
// activation, a token bucket of golang.org/x/time/rate (default
// rate.NewLimiter(DefaultEvidenceRate, DefaultEvidenceBurst)); a request
// past it is answered 429 with Retry-After. Pass the same Limiter to the
// handlers of successive reloads so that a reload does not refill it (its
// SetLimit and SetBurst change it in place).
func WithEvidenceLimiter(l *rate.Limiter) EvidenceOption {
	return func(c *evidenceConfig) error {
		if l == nil {
			return errors.New("gateway: nil evidence limiter")
		}
		c.limiter = l
		return nil
	}
}

// WithEvidenceTimeout bounds one TPM operation (default
// [DefaultEvidenceTimeout]).
func WithEvidenceTimeout(d time.Duration) EvidenceOption {
	return func(c *evidenceConfig) error {
		if d <= 0 {
			return fmt.Errorf("gateway: evidence timeout %v is not positive", d)
		}
		c.timeout = d
		return nil
	}
}

// WithEvidenceMaxAge sets the Cache-Control max-age of the cached
// evidence container (default [DefaultKeyConfigMaxAge], as the key
// configuration); fresh evidence and answers are no-store.
func WithEvidenceMaxAge(d time.Duration) EvidenceOption {
	return func(c *evidenceConfig) error {
		if d < time.Second {
			return fmt.Errorf("gateway: evidence max-age %v is under a second", d)
		}
		c.maxAge = d
		return nil
	}
}

// WithEvidenceLogger sets where the handler logs (nothing secret: key
// ids, statuses, the reason evidence could not be collected).
func WithEvidenceLogger(l *slog.Logger) EvidenceOption {
	return func(c *evidenceConfig) error {
		c.logger = l
		return nil
	}
}

// WithEvidenceChain adds intermediate certificates (DER) to the EK
// certificate chain of every key's evidence, after those the TPM holds:
// the issuing CAs a verifier needs between the EK certificate and the TPM
// maker's root, which many TPMs do not keep in NV (the maker publishes
// them). A certificate the evidence carries already is not added twice;
// at most attest.MaxEKChain are carried in all.
func WithEvidenceChain(chain [][]byte) EvidenceOption {
	return func(c *evidenceConfig) error {
		if len(chain) > attest.MaxEKChain {
			return fmt.Errorf("gateway: %d EK chain certificates, more than evidence carries (%d)", len(chain), attest.MaxEKChain)
		}
		for i, der := range chain {
			if _, err := x509.ParseCertificate(der); err != nil {
				return fmt.Errorf("gateway: EK chain certificate %d: %w", i+1, err)
			}
		}
		c.chain = chain
		return nil
	}
}

// WithEvidenceMetrics counts the handler's requests in m
// (twoway_gateway_evidence_requests_total, by endpoint and status): the
// Metrics a gateway Handler records in, or any other.
func WithEvidenceMetrics(m *Metrics) EvidenceOption {
	return func(c *evidenceConfig) error {
		c.metrics = m
		return nil
	}
}

// NewEvidenceHandler returns the evidence handler for the keys the
// twoway.Gateway publishes, attested by attesters (by key id; a key with
// none is reported as not attestable). It collects and caches the
// evidence of every key published now, within ctx: a key whose evidence
// cannot be collected is reported in the container, and tried again on a
// later GET, so the handler is made even when a TPM is down.
func NewEvidenceHandler(ctx context.Context, keys *twoway.Gateway, attesters map[byte]Attester, opts ...EvidenceOption) (*EvidenceHandler, error) {
	if keys == nil {
		return nil, errors.New("gateway: no keys")
	}
	c := evidenceConfig{path: DefaultPath, timeout: DefaultEvidenceTimeout, maxAge: DefaultKeyConfigMaxAge}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.limiter == nil {
		c.limiter = rate.NewLimiter(DefaultEvidenceRate, DefaultEvidenceBurst)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	h := &EvidenceHandler{keys: keys, attesters: make(map[byte]Attester, len(attesters)), cfg: c, cache: map[string]*cachedEvidence{},
		evidencePath: c.path + EvidenceSuffix, activatePath: c.path + ActivateSuffix}
	for id, a := range attesters {
		if a != nil {
			h.attesters[id] = a
		}
	}
	h.cachedSet(ctx)
	return h, nil
}

// Handles reports whether the handler serves path (its two endpoints).
func (h *EvidenceHandler) Handles(path string) bool {
	return path == h.evidencePath || path == h.activatePath
}

// Evidence returns the container of cached evidence, as a GET without a
// nonce does (collecting what is missing).
func (h *EvidenceHandler) Evidence(ctx context.Context) *attest.EvidenceSet {
	return h.cachedSet(ctx)
}

// ServeHTTP serves the two endpoints; any other path is 404.
func (h *EvidenceHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case h.evidencePath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			h.problem(w, r, http.StatusMethodNotAllowed, "method not allowed", r.URL.Path+" serves the evidence to GET and HEAD")
			return
		}
		h.serveEvidence(w, r)
	case h.activatePath:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			h.problem(w, r, http.StatusMethodNotAllowed, "method not allowed", r.URL.Path+" takes a challenge by POST")
			return
		}
		h.serveActivate(w, r)
	default:
		h.problem(w, r, http.StatusNotFound, "not found", "the evidence is at "+h.evidencePath)
	}
}

func (h *EvidenceHandler) serveEvidence(w http.ResponseWriter, r *http.Request) {
	if !accepts(r.Header.Values("Accept"), attest.EvidenceSetMediaType) {
		h.problem(w, r, http.StatusNotAcceptable, "not acceptable", "the evidence is "+attest.EvidenceSetMediaType)
		return
	}
	q, ok := h.query(w, r)
	if !ok {
		return
	}
	for k := range q {
		if k != "nonce" {
			h.problem(w, r, http.StatusBadRequest, "bad query", fmt.Sprintf("unknown query parameter %q: the evidence takes only nonce=HEX", k))
			return
		}
	}
	var set *attest.EvidenceSet
	cacheControl := "max-age=" + strconv.Itoa(int(h.cfg.maxAge/time.Second))
	if vs, ok := q["nonce"]; ok {
		nonce, err := parseNonceParam(vs)
		if err != nil {
			h.problem(w, r, http.StatusBadRequest, "bad nonce", err.Error())
			return
		}
		// A token for each key the TPMs will certify (up to the
		// bucket's size), so that the rate bounds the TPM's work.
		if !h.allowN(w, r, h.attestable()) {
			return
		}
		set = h.freshSet(r.Context(), nonce)
		cacheControl = "no-store"
	} else {
		set = h.cachedSet(r.Context())
		for _, k := range set.Keys {
			if k.Evidence == nil && !k.NotAttestable {
				// A failure of the moment, tried again after
				// evidenceRetryFailed: caches keep it no longer.
				cacheControl = "max-age=" + strconv.Itoa(int(min(h.cfg.maxAge, evidenceRetryFailed)/time.Second))
				break
			}
		}
	}
	if len(set.Keys) == 0 {
		w.Header().Set("Retry-After", "1")
		h.problem(w, r, http.StatusServiceUnavailable, "no keys", "the gateway publishes no keys")
		return
	}
	body, err := set.Marshal()
	if err != nil {
		h.problem(w, r, http.StatusInternalServerError, "internal error", "the evidence could not be encoded")
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", attest.EvidenceSetMediaType)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set("Cache-Control", cacheControl)
	hdr.Set("Vary", "Accept")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	h.count(r, http.StatusOK)
}

// query parses the request's query strictly, or answers 400: Go's
// URL.Query drops a pair it cannot parse (one with a semicolon, a bad
// escape), which would make ?nonce=HEX;x a request for the cached
// evidence.
func (h *EvidenceHandler) query(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.problem(w, r, http.StatusBadRequest, "bad query", "the query does not parse: "+oneLine(err.Error()))
		return nil, false
	}
	return q, true
}

// parseNonceParam parses ?nonce=HEX: given once, 1 to attest.MaxNonceSize
// bytes.
func parseNonceParam(vs []string) ([]byte, error) {
	if len(vs) != 1 {
		return nil, fmt.Errorf("nonce given %d times", len(vs))
	}
	if len(vs[0]) > 2*attest.MaxNonceSize+2 {
		return nil, fmt.Errorf("nonce of more than %d bytes", attest.MaxNonceSize)
	}
	b, err := hex.DecodeString(vs[0])
	if err != nil {
		return nil, errors.New("nonce is not hex")
	}
	if len(b) == 0 || len(b) > attest.MaxNonceSize {
		return nil, fmt.Errorf("nonce of %d bytes: want 1 to %d", len(b), attest.MaxNonceSize)
	}
	return b, nil
}

// cachedSet returns the container of cached evidence for the keys
// published now, collecting what is not cached yet (or failed more than
// evidenceRetryFailed ago).
func (h *EvidenceHandler) cachedSet(ctx context.Context) *attest.EvidenceSet {
	set := &attest.EvidenceSet{}
	for _, cfg := range h.keys.KeyConfigs() {
		kc, err := cfg.MarshalBinary()
		if err != nil {
			set.Keys = append(set.Keys, attest.KeyEvidence{KeyID: cfg.KeyID, Problem: "the key configuration does not encode"})
			continue
		}
		h.mu.Lock()
		c, ok := h.cache[string(kc)]
		if !ok || (c.ev == nil && !c.notAttestable && time.Since(c.at) > evidenceRetryFailed) {
			// Collected under the lock: one collection per key at a
			// time, and a GET that finds it missing waits for it. Not
			// under the client's context: a client that hangs up
			// would cache a failure for everyone (collect bounds it by
			// the handler's timeout).
			c = h.collect(context.WithoutCancel(ctx), cfg, nil)
			h.cache[string(kc)] = c
		}
		h.mu.Unlock()
		set.Keys = append(set.Keys, c.entry(cfg.KeyID))
	}
	return set
}

// attestable counts the keys published now that fresh evidence makes a
// TPM certify: those with an attester that the cache does not know to be
// not attestable (PKCS#11 and soft keys answer without TPM work).
func (h *EvidenceHandler) attestable() int {
	n := 0
	for _, cfg := range h.keys.KeyConfigs() {
		if _, ok := h.attesters[cfg.KeyID]; !ok {
			continue
		}
		kc, err := cfg.MarshalBinary()
		if err != nil {
			continue
		}
		h.mu.Lock()
		c := h.cache[string(kc)]
		h.mu.Unlock()
		if c == nil || !c.notAttestable {
			n++
		}
	}
	return n
}

// freshSet makes evidence for nonce for every key published now.
func (h *EvidenceHandler) freshSet(ctx context.Context, nonce []byte) *attest.EvidenceSet {
	set := &attest.EvidenceSet{Nonce: nonce}
	for _, cfg := range h.keys.KeyConfigs() {
		set.Keys = append(set.Keys, h.collect(ctx, cfg, nonce).entry(cfg.KeyID))
	}
	return set
}

func (h *EvidenceHandler) collect(ctx context.Context, cfg twoway.KeyConfig, nonce []byte) *cachedEvidence {
	c := &cachedEvidence{at: time.Now()}
	a, ok := h.attesters[cfg.KeyID]
	if !ok {
		c.notAttestable, c.problem = true, "no attestation for this key"
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.timeout)
	defer cancel()
	ev, err := a.Attest(ctx, cfg, nonce)
	switch {
	case err == nil:
		c.ev = ev
		h.addChain(ev, cfg.KeyID)
	case errors.Is(err, attest.ErrNotAttestable):
		c.notAttestable, c.problem = true, notAttestableReason(err)
	default:
		// The error names the key's reference (a path on the gateway's
		// machine): the log has it, clients get what happened.
		c.problem = "the evidence could not be collected now (the TPM or the plugin failed; the gateway's log says why)"
		h.cfg.logger.Warn("evidence: collecting failed", "key_id", int(cfg.KeyID), "error", err.Error())
	}
	return c
}

// addChain adds the configured intermediates to ev's EK chain.
func (h *EvidenceHandler) addChain(ev *attest.Evidence, id byte) {
	for _, der := range h.cfg.chain {
		if slices.ContainsFunc(ev.EKChain, func(have []byte) bool { return bytes.Equal(have, der) }) {
			continue
		}
		if len(ev.EKChain) == attest.MaxEKChain {
			h.cfg.logger.Warn("evidence: the EK chain is full; intermediates left out", "key_id", int(id), "max", attest.MaxEKChain)
			return
		}
		ev.EKChain = append(ev.EKChain, der)
	}
}

func (c *cachedEvidence) entry(id byte) attest.KeyEvidence {
	return attest.KeyEvidence{KeyID: id, Evidence: c.ev, NotAttestable: c.notAttestable, Problem: c.problem}
}

func (h *EvidenceHandler) serveActivate(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != ChallengeMediaType {
		h.problem(w, r, http.StatusUnsupportedMediaType, "unsupported media type", "a challenge is "+ChallengeMediaType)
		return
	}
	q, ok := h.query(w, r)
	if !ok {
		return
	}
	keyID := -1
	for k, vs := range q {
		if k != "key_id" || len(vs) != 1 {
			h.problem(w, r, http.StatusBadRequest, "bad query", "activation takes only key_id=N, once")
			return
		}
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 0 || n > 255 {
			h.problem(w, r, http.StatusBadRequest, "bad query", "key_id is a number from 0 to 255")
			return
		}
		keyID = n
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, attest.MaxChallengeSize+1))
	if err != nil {
		h.problem(w, r, http.StatusBadRequest, "bad request", "the challenge could not be read")
		return
	}
	if len(body) > attest.MaxChallengeSize {
		h.problem(w, r, http.StatusRequestEntityTooLarge, "challenge too large", fmt.Sprintf("a challenge is at most %d bytes", attest.MaxChallengeSize))
		return
	}
	ch, err := attest.ParseChallenge(body)
	if err != nil {
		h.problem(w, r, http.StatusBadRequest, "bad challenge", oneLine(err.Error()))
		return
	}
	a, err := h.activator(r.Context(), ch, keyID)
	if err != nil {
		h.problem(w, r, http.StatusBadRequest, "bad challenge", err.Error())
		return
	}
	if !h.allowN(w, r, 1) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.timeout)
	defer cancel()
	ans, err := a.Activate(ctx, ch)
	if err != nil {
		status, title := http.StatusBadGateway, "activation failed"
		if ctx.Err() != nil {
			status, title = http.StatusServiceUnavailable, "the TPM did not answer in time"
			w.Header().Set("Retry-After", "1")
		}
		h.cfg.logger.Warn("evidence: activation failed", "error", err.Error())
		h.problem(w, r, status, title, "the TPM did not release the credential: the challenge was not made for its EK and AK, or the TPM or the plugin failed (the gateway's log says why)")
		return
	}
	out, err := json.Marshal(ans)
	if err != nil {
		h.problem(w, r, http.StatusInternalServerError, "internal error", "the answer could not be encoded")
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", ChallengeMediaType)
	hdr.Set("Content-Length", strconv.Itoa(len(out)))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	h.count(r, http.StatusOK)
}

// count counts a request answered with status, if the handler has
// metrics: its endpoint is activate, fresh (the evidence with a query:
// nonce is its one parameter, so a query is a request for fresh evidence,
// served or refused) or cached.
func (h *EvidenceHandler) count(r *http.Request, status int) {
	if h.cfg.metrics == nil {
		return
	}
	endpoint := "cached"
	switch {
	case r.URL.Path == h.activatePath:
		endpoint = "activate"
	case r.URL.RawQuery != "":
		endpoint = "fresh"
	}
	h.cfg.metrics.evidence.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
}

// activator finds the key whose TPM the challenge is for: keyID's, or a
// published key whose cached evidence has the challenge's EK and AK.
func (h *EvidenceHandler) activator(ctx context.Context, ch *attest.Challenge, keyID int) (Attester, error) {
	set := h.cachedSet(ctx)
	for _, k := range set.Keys {
		if keyID >= 0 && int(k.KeyID) != keyID {
			continue
		}
		if k.Evidence == nil {
			if keyID >= 0 {
				return nil, fmt.Errorf("key id %d has no evidence: %s", keyID, k.Problem)
			}
			continue
		}
		if bytes.Equal(k.Evidence.EKPublic, ch.EKPublic) && bytes.Equal(k.Evidence.AKPublic, ch.AKPublic) {
			return h.attesters[k.KeyID], nil
		}
		if keyID >= 0 {
			return nil, fmt.Errorf("the challenge is not for the EK and AK of key id %d's evidence", keyID)
		}
	}
	if keyID >= 0 {
		return nil, fmt.Errorf("the gateway publishes no key id %d", keyID)
	}
	return nil, errors.New("the challenge is not for the EK and AK of any evidence this gateway serves")
}

// allowN takes n tokens of the rate limit (at least one, at most the
// bucket's size), or answers 429 with Retry-After.
func (h *EvidenceHandler) allowN(w http.ResponseWriter, r *http.Request, n int) bool {
	n = max(1, min(n, h.cfg.limiter.Burst()))
	res := h.cfg.limiter.ReserveN(time.Now(), n)
	wait := time.Hour // a burst of 0 never allows one
	if res.OK() {
		if wait = res.Delay(); wait == 0 {
			return true
		}
		res.Cancel() // refused: the token is not spent
	}
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	h.problem(w, r, http.StatusTooManyRequests, "too many requests",
		"fresh evidence and activation make the TPM work, and are rate-limited: retry after "+strconv.Itoa(max(secs, 1))+" s")
	return false
}

func (h *EvidenceHandler) problem(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	writeProblem(w, r, status, "", title, detail)
	h.count(r, status)
	h.cfg.logger.LogAttrs(r.Context(), levelFor(status), "evidence: request refused", strAttr("path", r.URL.Path), intAttr("status", status))
}

// notAttestableReason is the reason in an error wrapping
// attest.ErrNotAttestable, without what the layers above added (the key's
// reference, which names a path on the gateway's machine): the text after
// the sentinel's last mention, "a pkcs11 key: PKCS#11 defines no key
// attestation ...".
func notAttestableReason(err error) string {
	msg, sent := err.Error(), attest.ErrNotAttestable.Error()
	i := strings.LastIndex(msg, sent)
	if i < 0 {
		return "the key cannot be attested"
	}
	if r := strings.TrimLeft(msg[i+len(sent):], ": "); r != "" {
		return oneLine(r)
	}
	return "the key cannot be attested"
}

// oneLine keeps an error's text on one line, for a problem detail.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
