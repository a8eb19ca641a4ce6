package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/gateway"
)

// TestOuterBodyLength: the opener reads an unchunked request straight
// from the outer body, held to its Content-Length. A body that ends early
// is malformed (truncated), not a key problem that would send the client
// to fetch the keys again; one longer than its Content-Length is malformed
// too; a body without a Content-Length is read to its end.
func TestOuterBodyLength(t *testing.T) {
	srv, _, h := start(t, echo)
	c := newClient(t, srv)
	good := sealed(t, c, false)
	serve := func(body io.Reader, clen int64) (*httptest.ResponseRecorder, gateway.Problem) {
		req := httptest.NewRequest(http.MethodPost, gateway.DefaultPath, body)
		req.Header.Set("Content-Type", gateway.RequestMediaType)
		req.ContentLength = clen
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var p gateway.Problem
		if rec.Header().Get("Content-Type") == gateway.ProblemMediaType {
			p = problemOf(t, rec.Body.Bytes())
		}
		return rec, p
	}
	n := int64(len(good))
	for _, tc := range []struct {
		name   string
		body   []byte
		clen   int64
		detail string
	}{
		{"ends inside the header", good[:5], n, "truncated"},
		{"ends inside the ciphertext", good[:n-10], n, "truncated"},
		{"longer than its Content-Length", append(bytes.Clone(good), 1, 2, 3), n, "longer than its Content-Length"},
	} {
		rec, p := serve(bytes.NewReader(tc.body), tc.clen)
		if rec.Code != 400 || p.Type != "about:blank" || !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("%s: %d %+v", tc.name, rec.Code, p)
		}
	}
	// no Content-Length: read to the end, through a reader that does not
	// tell its length
	for _, clen := range []int64{n, -1} {
		rec, _ := serve(struct{ io.Reader }{bytes.NewReader(good)}, clen)
		if rec.Code != 200 || rec.Header().Get("Content-Type") != gateway.ResponseMediaType {
			t.Errorf("Content-Length %d: %d %s", clen, rec.Code, rec.Body)
		}
	}
}
