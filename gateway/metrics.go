package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes, the values of the outcome label of requests_total.
const (
	outcomeOK            = "ok"             // answered by the inner handler (any status it chose)
	outcomeKeyConfig     = "key_config"     // the key configuration was served
	outcomeInnerError    = "inner_error"    // an encapsulated error made by the gateway (400, 403, 431, 413, 500, 502)
	outcomeTimeout       = "timeout"        // the inner handler timed out (encapsulated 504, or an aborted stream)
	outcomeAborted       = "aborted"        // a chunked response was ended without its final chunk
	outcomeCanceled      = "canceled"       // the client went away
	outcomeKeyError      = "key_error"      // unknown key id, refused suite, or no decryption (400, ohttp-key)
	outcomeMalformed     = "malformed"      // a malformed encapsulated request (400)
	outcomeTooLarge      = "too_large"      // the encapsulated request exceeds its bound (413)
	outcomeMediaType     = "media_type"     // not an OHTTP media type (415)
	outcomeExpect        = "expect"         // Expect: 100-continue (417)
	outcomeMethod        = "method"         // method not allowed (405)
	outcomeNotFound      = "not_found"      // another path (404)
	outcomeNotAcceptable = "not_acceptable" // Accept refuses the key configuration (406)
	outcomeOverloaded    = "overloaded"     // past the concurrency bound (503)
	outcomeKeyDown       = "key_unavailable"
	outcomeNoKeys        = "no_keys"
)

// Metrics are the gateway's Prometheus metrics. A Metrics is a
// prometheus.Collector: register it with the registry that the metrics
// listener serves, and give it to one or more Handlers with WithMetrics.
//
//	twoway_gateway_requests_total{outcome}           requests by outcome
//	twoway_gateway_decapsulation_seconds             opening a request: header, key, HPKE, (unchunked) authentication
//	twoway_gateway_origin_seconds                    the inner handler (the origin), from its start to its return
//	twoway_gateway_request_seconds                   the whole request, as the gateway served it
//	twoway_gateway_in_flight_requests                requests being served
//	twoway_gateway_key_uses_total{key_id}            requests opened with each key id
//	twoway_gateway_plugin_restarts_total             plugin restarts, counted by the caller (PluginRestarts)
//	twoway_gateway_evidence_requests_total{endpoint,status}
//	                                                 evidence requests (EvidenceHandler, WithEvidenceMetrics):
//	                                                 endpoint cached, fresh (?nonce=) or activate; status the HTTP status
type Metrics struct {
	requests *prometheus.CounterVec
	decap    prometheus.Histogram
	origin   prometheus.Histogram
	total    prometheus.Histogram
	inFlight prometheus.Gauge
	keyUses  *prometheus.CounterVec
	evidence *prometheus.CounterVec

	// The children of requests and keyUses, looked up once: a
	// CounterVec hashes and compares its label values on every use.
	outcomes sync.Map // outcome → prometheus.Counter
	keyIDs   [256]atomic.Pointer[prometheus.Counter]

	// PluginRestarts counts restarts of the plugin that holds the keys.
	// The gateway does not see them: whoever runs the plugin client
	// increments it (for example from the client's restart callback).
	PluginRestarts prometheus.Counter
}

// NewMetrics returns a fresh set of metrics.
func NewMetrics() *Metrics {
	const ns, sub = "twoway", "gateway"
	buckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests by outcome."}, []string{"outcome"}),
		decap: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "decapsulation_seconds",
			Help: "Time to open an encapsulated request: header, key decapsulation, HPKE and, unchunked, authentication.", Buckets: buckets}),
		origin: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "origin_seconds",
			Help: "Time the inner handler (the origin) took, from its start to its return.", Buckets: buckets}),
		total: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_seconds",
			Help: "Time to serve a request, as the gateway saw it.", Buckets: buckets}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "in_flight_requests",
			Help: "Requests being served."}),
		keyUses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "key_uses_total",
			Help: "Requests opened with each key id."}, []string{"key_id"}),
		evidence: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "evidence_requests_total",
			Help: "Requests for key evidence by endpoint (cached, fresh, activate) and HTTP status."}, []string{"endpoint", "status"}),
		PluginRestarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "plugin_restarts_total",
			Help: "Restarts of the plugin process that holds the keys."}),
	}
}

// request returns the counter of requests with an outcome.
func (m *Metrics) request(outcome string) prometheus.Counter {
	if c, ok := m.outcomes.Load(outcome); ok {
		return c.(prometheus.Counter)
	}
	c, _ := m.outcomes.LoadOrStore(outcome, m.requests.WithLabelValues(outcome))
	return c.(prometheus.Counter)
}

// keyUse returns the counter of requests opened with a key id.
func (m *Metrics) keyUse(id byte) prometheus.Counter {
	if c := m.keyIDs[id].Load(); c != nil {
		return *c
	}
	c := m.keyUses.WithLabelValues(keyIDLabels[id])
	m.keyIDs[id].Store(&c)
	return c
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.decap, m.origin, m.total, m.inFlight, m.keyUses, m.evidence, m.PluginRestarts}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}
