// Package gateway is an Oblivious HTTP gateway (RFC 9458, and Chunked
// OHTTP, draft-ietf-ohai-chunked-ohttp-08) as an [http.Handler]: it opens
// encapsulated requests with the keys of a [twoway.Gateway], decodes the
// Binary HTTP (RFC 9292) request inside, hands it to an inner
// [http.Handler] as an ordinary *http.Request, and seals the inner
// handler's response, encoded as Binary HTTP, bound to the request.
//
// The keys are only used through their interface: keys from the plugin
// client (package plugins) keep their private halves in a PKCS#11 token or
// a TPM, and the gateway never holds them.
//
// # What it serves
//
// At [DefaultPath] (RFC 9540's /.well-known/ohttp-gateway, see [WithPath]):
//
//   - POST of message/ohttp-req: an RFC 9458 request; the response is
//     message/ohttp-res, sealed once the inner handler has returned.
//   - POST of message/ohttp-chunked-req: a chunked request; the inner
//     handler reads the request body as chunks arrive, and its response is
//     message/ohttp-chunked-res (with "Incremental: ?1"), one sealed chunk
//     per Flush of its ResponseWriter (or whenever a chunk fills), so memory
//     is bounded by a chunk, not by the message.
//   - GET or HEAD: the application/ohttp-keys body that the twoway.Gateway
//     publishes, the same bytes for every client, with Cache-Control
//     max-age ([WithKeyConfigMaxAge]) and an ETag. [WithKeyConfigPath] adds a
//     second path that serves only the keys.
//
// Every other path is 404; other methods are 405 with Allow.
// [EvidenceHandler], a handler of its own, serves the keys' TPM evidence
// next to it (P/evidence, P/evidence/activate).
//
// # Errors
//
// Failures before the request is decapsulated are outer responses with
// application/problem+json bodies (RFC 9457): an unknown key id, a suite
// the key does not accept, or a request that does not decrypt get 400 with
// the problem type [KeyProblemType] (RFC 9458 section 5.3), so that clients
// refetch the key configuration; a malformed request 400; a request over
// the size limit 413; a wrong media type 415; "Expect: 100-continue" 417; a
// key that cannot be reached (a plugin down) 503 with Retry-After, as is a
// request beyond the concurrency bound.
//
// Failures after decapsulation travel encapsulated inside an outer 200,
// where only the client can read them (RFC 9458 section 5.2): malformed
// Binary HTTP 400, a target the policy refuses 403 ([WithTargetPolicy]),
// an origin that cannot be reached 502 and one that times out 504 (see
// [OriginErrorHandler]), a handler that times out 504 ([WithHandlerTimeout]).
//
// A chunked response that has started cannot change its status. If the
// request stream then fails (a chunk that does not authenticate, a cut, bad
// Binary HTTP), the handler times out or panics, the gateway ends the outer
// response without its final chunk (it panics with [http.ErrAbortHandler]),
// so the client sees a truncated message, never a complete one.
//
// # What the inner handler sees
//
// The *http.Request carries the method, scheme (URL.Scheme), authority
// (Host and URL.Host), path, headers, body and trailers of the Binary HTTP
// request and nothing of the outer request: RemoteAddr is empty (it would
// be the relay's address), TLS is nil, and the context is the outer
// request's (cancelled when the relay goes away) with the handler timeout.
// Connection-specific fields (Connection, Transfer-Encoding, Upgrade,
// Keep-Alive, Proxy-Connection, TE other than "trailers") are refused with
// 400, as HTTP/2 does.
//
// # Limits, metrics, logs
//
// Every size is bounded ([WithMaxRequestLen], [WithMaxResponseLen],
// [WithMaxHeaderLen]), as are the time an inner handler may take
// ([WithHandlerTimeout]) and the requests served at once
// ([WithMaxConcurrent]). Read-header and idle timeouts belong to the
// http.Server: [NewServer] sets them. [Metrics] is a prometheus.Collector;
// logs ([WithLogger]) never contain plaintext, keys or secrets.
package gateway
