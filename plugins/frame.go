package plugins

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The data channel carries the per-request calls (ECDH, Decapsulate)
// between a host and its plugin: two connected unix stream socket pairs
// that the host creates, one for each direction, whose other ends the
// plugin inherits at exec (see [DataFDEnv]). They have no path and no
// listener; holding the descriptors is the authentication. Each socket
// carries frames one way only (the host shuts the other direction down):
// a read at one end then wakes nothing at the other, where a socket that
// carried both ways would wake its peer's network poller for the room
// each read frees.
//
// Every frame, both ways, is a fixed 24-byte header followed by a payload
// of at most maxRequestPayload (host to plugin) or maxResponsePayload
// (plugin to host) bytes; all integers are little-endian:
//
//	offset size field
//	0      4    payload length
//	4      1    kind: frameECDH, frameDecapsulate, frameCancel (host to
//	            plugin); frameResult, frameError (plugin to host)
//	5      1    code: 0, or for frameError the error's class (a gRPC code
//	            number, as Backend errors map to them; never 0 or 14)
//	6      2    key index: the key's position in the plugin's Describe
//	            list (ECDH, Decapsulate); 0 otherwise
//	8      8    call id: chosen by the host, never 0, increasing
//	16     8    deadline in nanoseconds since the Unix epoch (ECDH,
//	            Decapsulate; 0 for none); 0 otherwise
//	24     n    payload: the peer's public key or the encapsulated key
//	            (ECDH, Decapsulate), the DH output or shared secret
//	            (frameResult), the error's text (frameError); empty for
//	            frameCancel
//
// The plugin answers every ECDH and Decapsulate exactly once, with
// frameResult or frameError, in any order; a frameCancel asks it to give
// up the call with that id (which it still answers). A frame that breaks
// these rules ends the channel: the host then treats the plugin as gone
// and restarts it; the plugin stops serving the channel.
const (
	frameHeaderSize = 24

	frameECDH        = 1
	frameDecapsulate = 2
	frameCancel      = 3
	frameResult      = 0x81
	frameError       = 0x82

	// maxRequestPayload bounds a request's payload. The largest legitimate
	// one is an ML-KEM-1024 ciphertext (1568 bytes).
	maxRequestPayload = 2048
	// maxResultSize bounds a result: a DH output (at most 66 bytes, P-521)
	// or a KEM shared secret (at most 64).
	maxResultSize = 128
	// maxResponsePayload bounds a response's payload: a result or an
	// error's text, which the plugin cuts to fit.
	maxResponsePayload = 512

	// maxFrameSize is the largest frame either way.
	maxFrameSize = frameHeaderSize + maxRequestPayload
)

// errProtocol is the error a frame that breaks the data channel's rules
// wraps.
var errProtocol = errors.New("data channel protocol violation")

// frame is a decoded frame header; its payload follows it in the buffer.
type frame struct {
	kind     byte
	code     byte
	key      uint16
	id       uint64
	deadline int64
	n        int // payload length
}

// putHeader writes f's header into b[:frameHeaderSize].
func putHeader(b []byte, f frame) {
	_ = b[frameHeaderSize-1]
	binary.LittleEndian.PutUint32(b[0:], uint32(f.n))
	b[4] = f.kind
	b[5] = f.code
	binary.LittleEndian.PutUint16(b[6:], f.key)
	binary.LittleEndian.PutUint64(b[8:], f.id)
	binary.LittleEndian.PutUint64(b[16:], uint64(f.deadline))
}

// getHeader reads a header from b[:frameHeaderSize] without checking it;
// n is its payload length, which the caller has read (payloadLen) and
// bounded.
func getHeader(b []byte, n int) frame {
	_ = b[frameHeaderSize-1]
	return frame{
		n:        n,
		kind:     b[4],
		code:     b[5],
		key:      binary.LittleEndian.Uint16(b[6:]),
		id:       binary.LittleEndian.Uint64(b[8:]),
		deadline: int64(binary.LittleEndian.Uint64(b[16:])),
	}
}

// payloadLen reads the payload length of the header in b. It stays the
// uint32 it is on the wire until it has been bounded: converted to int,
// 2³¹ and more would be negative on 32-bit systems and pass any bound.
func payloadLen(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// decodeRequest decodes the first frame of b, as the plugin receives it.
// It returns the frame and its total size, or size 0 when b does not yet
// hold a whole frame, or an error wrapping errProtocol. It checks the
// header only as far as b holds it, so that a bad length is refused before
// its payload is waited for. The payload is b[frameHeaderSize:size].
func decodeRequest(b []byte) (frame, int, error) {
	if len(b) < frameHeaderSize {
		return frame{}, 0, nil
	}
	n := payloadLen(b)
	if n > maxRequestPayload {
		return frame{}, 0, fmt.Errorf("%w: a request of %d bytes (at most %d)", errProtocol, n, maxRequestPayload)
	}
	f := getHeader(b, int(n))
	if f.id == 0 {
		return f, 0, fmt.Errorf("%w: call id 0", errProtocol)
	}
	if f.code != 0 {
		return f, 0, fmt.Errorf("%w: a request with code %d", errProtocol, f.code)
	}
	switch f.kind {
	case frameECDH, frameDecapsulate:
	case frameCancel:
		if f.n != 0 || f.key != 0 || f.deadline != 0 {
			return f, 0, fmt.Errorf("%w: a cancellation with a payload, key or deadline", errProtocol)
		}
	default:
		return f, 0, fmt.Errorf("%w: request kind %#x", errProtocol, f.kind)
	}
	size := frameHeaderSize + f.n
	if len(b) < size {
		return f, 0, nil
	}
	return f, size, nil
}

// decodeResponse decodes the first frame of b, as the host receives it;
// see decodeRequest.
func decodeResponse(b []byte) (frame, int, error) {
	if len(b) < frameHeaderSize {
		return frame{}, 0, nil
	}
	n := payloadLen(b)
	if n > maxResponsePayload {
		return frame{}, 0, fmt.Errorf("%w: a response of %d bytes (at most %d)", errProtocol, n, maxResponsePayload)
	}
	f := getHeader(b, int(n))
	if f.id == 0 || f.key != 0 || f.deadline != 0 {
		return f, 0, fmt.Errorf("%w: a response with call id 0, a key or a deadline", errProtocol)
	}
	switch f.kind {
	case frameResult:
		if f.code != 0 || f.n > maxResultSize {
			return f, 0, fmt.Errorf("%w: a result with code %d and %d bytes", errProtocol, f.code, f.n)
		}
	case frameError:
		// Unavailable (14) is the host's own: it means the plugin is gone.
		if f.code == 0 || f.code > 16 || f.code == 14 {
			return f, 0, fmt.Errorf("%w: an error with code %d", errProtocol, f.code)
		}
	default:
		return f, 0, fmt.Errorf("%w: response kind %#x", errProtocol, f.kind)
	}
	size := frameHeaderSize + f.n
	if len(b) < size {
		return f, 0, nil
	}
	return f, size, nil
}

// truncateMessage cuts an error's text to fit a response, at a UTF-8
// boundary.
func truncateMessage(s string) string {
	if len(s) <= maxResponsePayload {
		return s
	}
	i := maxResponsePayload
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
