// Package bhttp is a strict, streaming codec for Binary HTTP messages
// (RFC 9292): requests and responses, known-length and indeterminate-length
// framing, informational responses, trailers, truncation and padding.
//
// The decoder reads the control data and the header section of a message
// (bounded by [Limits]) and returns a [Body] that streams the content as it
// arrives, then reads the trailer section and checks the padding. It never
// guesses: a message cut anywhere RFC 9292 section 3.8 does not allow fails
// with [ErrTruncated], a field name or value that HTTP/2 would call malformed
// (uppercase or pseudo-field names, control characters, surrounding
// whitespace) fails with [ErrMalformed], and exceeding a limit fails with
// [ErrTooLarge], each naming the part of the message at fault. Error messages
// name positions and lengths, never the content of fields, so they can be
// logged.
//
// The encoder appends messages or parts of messages to a byte slice: a whole
// message with [AppendRequest] or [AppendResponse], or an
// indeterminate-length message piece by piece (head, content chunks, end),
// which is what a streaming response needs.
package bhttp

import (
	"errors"
	"fmt"
	"io"
)

// Framing is the framing indicator that starts every message (RFC 9292
// section 3.3).
type Framing uint8

// The four framing indicators.
const (
	KnownLengthRequest          Framing = 0
	KnownLengthResponse         Framing = 1
	IndeterminateLengthRequest  Framing = 2
	IndeterminateLengthResponse Framing = 3
)

// KnownLength reports whether f is a known-length framing.
func (f Framing) KnownLength() bool { return f == KnownLengthRequest || f == KnownLengthResponse }

// Request reports whether f frames a request.
func (f Framing) Request() bool { return f == KnownLengthRequest || f == IndeterminateLengthRequest }

func (f Framing) String() string {
	switch f {
	case KnownLengthRequest:
		return "known-length request"
	case KnownLengthResponse:
		return "known-length response"
	case IndeterminateLengthRequest:
		return "indeterminate-length request"
	case IndeterminateLengthResponse:
		return "indeterminate-length response"
	}
	return fmt.Sprintf("framing indicator %d", uint8(f))
}

// Errors the decoder and encoder return, wrapped with what was wrong. Test
// for them with errors.Is.
var (
	// ErrMalformed means the message breaks RFC 9292 (or the HTTP field
	// rules it adopts): a bad framing indicator, status code, control data,
	// field name or value, or non-zero padding.
	ErrMalformed = errors.New("bhttp: malformed message")

	// ErrTruncated means the message ended where RFC 9292 does not allow it
	// to: inside a length, a field, the content, or an indeterminate-length
	// section before its terminator. It also matches io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("bhttp: message truncated")

	// ErrTooLarge means a part of the message exceeds its [Limits].
	ErrTooLarge = errors.New("bhttp: message exceeds a limit")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func truncated(what string) error {
	return fmt.Errorf("%w: %s: %w", ErrTruncated, what, io.ErrUnexpectedEOF)
}

func tooLarge(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTooLarge, fmt.Sprintf(format, args...))
}

// Field is one field line: a name (lowercase on the wire) and a value.
type Field struct {
	Name  string
	Value string
}

// Limits bound what the decoder accepts. Zero fields take their defaults.
type Limits struct {
	// MaxControlDataLen bounds the request control data (method, scheme,
	// authority and path together, with their length prefixes). Default
	// 8 KiB.
	MaxControlDataLen int
	// MaxFieldSectionLen bounds each field section (header, trailer, and
	// each informational response's), as encoded. Default 16 KiB.
	MaxFieldSectionLen int
	// MaxContentLen bounds the content, in bytes. Default: no bound other
	// than what the caller's reader delivers; negative means none.
	MaxContentLen int64
	// MaxInformational bounds the number of informational (1xx) responses
	// before the final one. Default 8.
	MaxInformational int
}

// Default limits.
const (
	DefaultMaxControlDataLen  = 8 << 10
	DefaultMaxFieldSectionLen = 16 << 10
	DefaultMaxInformational   = 8
)

func (l Limits) withDefaults() Limits {
	if l.MaxControlDataLen <= 0 {
		l.MaxControlDataLen = DefaultMaxControlDataLen
	}
	if l.MaxFieldSectionLen <= 0 {
		l.MaxFieldSectionLen = DefaultMaxFieldSectionLen
	}
	if l.MaxContentLen == 0 {
		l.MaxContentLen = -1
	}
	if l.MaxInformational <= 0 {
		l.MaxInformational = DefaultMaxInformational
	}
	return l
}

// Request is the control data and header section of a request (RFC 9292
// section 3.4), and its content.
type Request struct {
	Framing   Framing
	Method    string
	Scheme    string
	Authority string
	Path      string
	Header    []Field
	// ContentLength is the length of the content of a known-length
	// request, and -1 for an indeterminate-length one.
	ContentLength int64
	// Body reads the content; at its io.EOF the trailer section has been
	// read and the padding checked.
	Body *Body
}

// Informational is an informational (1xx) response that precedes the
// final response.
type Informational struct {
	Status int
	Header []Field
}

// Response is a response's informational responses, its final status code
// and header section (RFC 9292 section 3.5), and its content.
type Response struct {
	Framing       Framing
	Informational []Informational
	Status        int
	Header        []Field
	// ContentLength is the length of the content of a known-length
	// response, and -1 for an indeterminate-length one.
	ContentLength int64
	// Body reads the content; at its io.EOF the trailer section has been
	// read and the padding checked.
	Body *Body
}
