package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ProblemMediaType is the media type of problem details (RFC 9457), the
// body of every error response the gateway makes, outer or encapsulated.
const ProblemMediaType = "application/problem+json"

// Problem is a problem details object (RFC 9457 section 3).
type Problem struct {
	// Type is a URI naming the problem: [KeyProblemType], or "about:blank"
	// when the status code says it all.
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	// Detail says what was wrong with this request.
	Detail string `json:"detail,omitempty"`
}

// problemBody returns the JSON body of a problem.
func problemBody(status int, typ, title, detail string) []byte {
	if typ == "" {
		typ = "about:blank"
	}
	b, err := json.Marshal(Problem{Type: typ, Title: title, Status: status, Detail: detail})
	if err != nil { // cannot happen: strings and an int
		return []byte(`{"type":"about:blank","status":` + strconv.Itoa(status) + `}`)
	}
	return b
}

// outerProblem writes an outer error response (before decapsulation) and
// records its outcome.
func (h *Handler) outerProblem(w http.ResponseWriter, r *http.Request, outcome string, status int, typ, title, detail string) {
	writeProblem(w, r, status, typ, title, detail)
	h.cfg.metrics.request(outcome).Inc()
	h.cfg.logger.LogAttrs(r.Context(), levelFor(status), "ohttp gateway: request refused",
		strAttr("outcome", outcome), intAttr("status", status))
}

// writeProblem writes a problem details response (RFC 9457), not to be
// cached, without its body for HEAD.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, typ, title, detail string) {
	body := problemBody(status, typ, title, detail)
	hdr := w.Header()
	hdr.Set("Content-Type", ProblemMediaType)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
