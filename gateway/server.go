package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Recommended http.Server settings for a gateway behind a relay, which
// NewServer applies. Read and write timeouts stay off: a chunked exchange
// streams for as long as the handler timeout allows.
const (
	// ServerReadHeaderTimeout bounds the time a client (the relay) may take
	// to send the outer request's header: a slow client trickling headers
	// holds a connection no longer than this.
	ServerReadHeaderTimeout = 10 * time.Second
	// ServerIdleTimeout bounds how long an idle keep-alive connection stays
	// open.
	ServerIdleTimeout = 120 * time.Second
	// ServerMaxHeaderBytes bounds the outer request's header. The outer
	// header of an OHTTP request is small: the Binary HTTP request inside
	// carries the real one.
	ServerMaxHeaderBytes = 64 << 10
)

// NewServer returns an http.Server for h on addr with the recommended
// timeouts and header bound (ServerReadHeaderTimeout, ServerIdleTimeout,
// ServerMaxHeaderBytes). Set its TLSConfig for TLS or mutual TLS with the
// relay.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ServerReadHeaderTimeout,
		IdleTimeout:       ServerIdleTimeout,
		MaxHeaderBytes:    ServerMaxHeaderBytes,
	}
}

// OriginErrorHandler is an httputil.ReverseProxy ErrorHandler for an inner
// handler that forwards to an origin: an origin that does not answer in
// time (the request's deadline, or a network timeout) is 504, and any other
// failure to reach it 502. The gateway encapsulates either, so only the
// client learns of it. A request whose client has gone is answered with
// nothing.
func OriginErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return
	}
	status := http.StatusBadGateway
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		status = http.StatusGatewayTimeout
	}
	writeProblem(w, r, status, "", http.StatusText(status), "the origin could not be reached")
}
