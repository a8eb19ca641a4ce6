// Package twoway is encrypted request-response messaging over HPKE (RFC
// 9180): a sender seals a request that only the intended receiver can open,
// and the receiver seals a response that only that sender can open and that
// is bound to the request it answers.
//
// One-to-one messages are Oblivious HTTP (RFC 9458) encapsulated requests and
// responses, byte for byte; with [EnableChunking] they are Chunked OHTTP
// (draft-ietf-ohai-chunked-ohttp-08) messages. One-to-many messages
// ([MultiRequestSender]) seal a request once and wrap its key for each
// receiver; that format is the one of github.com/openpcc/twoway.
//
// The API is a drop-in for github.com/openpcc/twoway: a user of that package
// changes the import path and nothing else. On top of it, twoway is strict
// (truncation, trailing data, empty chunks and oversized messages are errors
// that say what was wrong), bounded (openers never buffer more than
// [WithMaxMessageLen] or [WithMaxChunkPlaintextLen] allow), and fast: chunks
// are sealed and opened in place, with no allocation per chunk.
//
// Every sealer and opener is an [io.Reader] that belongs to one message and
// one goroutine. Senders and receivers are safe for concurrent use, provided
// the random source they were given is (crypto/rand, the default, is).
//
// # Keys that stay in hardware
//
// A receiver needs only decapsulation from its private key. The seed
// constructors take a circl private key,
// [github.com/cloudflare/circl/kem.PrivateKey] (circlkem in this package's
// signatures); the receivers of this module also accept any
// [github.com/twoway-hsm/twoway-hsm/kem.PrivateKey] (kem in the
// signatures: NewRequestReceiverForKey, NewMultiRequestReceiverForKey,
// Gateway.AddKey), which a PKCS#11 token, a TPM or a plugin process
// implements without the private key ever entering this process.
package twoway
