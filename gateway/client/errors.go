package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/gateway"
)

// ErrKeyProblem is matched by an *OuterError of RFC 9458's key problem
// type: fetch the key configuration again.
var ErrKeyProblem = errors.New("client: the gateway does not accept this key configuration")

// maxProblemLen bounds the body of an outer error that is read.
const maxProblemLen = 64 << 10

// OuterError is a gateway's (or relay's) answer other than the one
// expected: an error before decapsulation, with its status and, when it
// sent one, its problem details (RFC 9457). Title and Detail are the
// server's texts kept to one printable line.
type OuterError struct {
	Status int
	Type   string // the problem type; gateway.KeyProblemType for a key problem
	Title  string
	Detail string

	ContentType string // the response's, when it sent no problem details
	BodyLen     int    // bytes of its body read (at most 64 KiB)
	RetryAfter  string // its Retry-After field, if any
	Location    string // its Location field (redirects are errors too)
}

func (e *OuterError) Error() string {
	return "client: the gateway answered " + e.Describe()
}

// Describe is the answer without who gave it: "400 Bad Request: key
// identifier unknown: ...", for callers that name the server themselves.
func (e *OuterError) Describe() string {
	s := fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	switch {
	case e.Title != "" && e.Detail != "":
		s += ": " + e.Title + ": " + e.Detail
	case e.Title != "" || e.Detail != "":
		s += ": " + e.Title + e.Detail
	case e.Location != "":
		s += " to " + e.Location
	case e.BodyLen > 0:
		ct := e.ContentType
		if ct == "" {
			ct = "no media type"
		}
		s += fmt.Sprintf(" (%s, %d bytes)", ct, e.BodyLen)
	}
	if e.RetryAfter != "" {
		s += " (Retry-After " + e.RetryAfter + ")"
	}
	return s
}

// Is matches ErrKeyProblem for the key problem type.
func (e *OuterError) Is(target error) bool {
	return target == ErrKeyProblem && e.Type == gateway.KeyProblemType
}

// readOuterError reads an outer error response (its body, bounded).
func readOuterError(resp *http.Response) *OuterError {
	e := &OuterError{Status: resp.StatusCode, ContentType: printable(resp.Header.Get("Content-Type")),
		RetryAfter: printable(resp.Header.Get("Retry-After")), Location: printable(redact(resp.Header.Get("Location")))}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProblemLen))
	e.BodyLen = len(body)
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == gateway.ProblemMediaType {
		var p gateway.Problem
		if json.Unmarshal(body, &p) == nil {
			e.Type, e.Title, e.Detail = printable(p.Type), printable(p.Title), printable(p.Detail)
		}
	}
	return e
}

// MediaTypeError is a 200 answer of the wrong media type: the URL is not
// a gateway's (or a relay's in front of one).
type MediaTypeError struct {
	URL  string // redacted
	Got  string // the Content-Type received, kept printable
	Want string
}

func (e *MediaTypeError) Error() string {
	got := e.Got
	if got == "" {
		got = "no media type"
	}
	return fmt.Sprintf("client: %s answered with %s, not %s", e.URL, got, e.Want)
}

// checkMediaType returns a *MediaTypeError unless resp is of type want.
func checkMediaType(resp *http.Response, url, want string) error {
	ct := resp.Header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ct); mt != want {
		return &MediaTypeError{URL: redact(url), Got: printable(ct), Want: want}
	}
	return nil
}

// printable keeps a remote text to one line of printable characters and
// at most 500 bytes.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
