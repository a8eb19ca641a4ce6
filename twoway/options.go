package twoway

import "fmt"

const (
	// DefaultMaxMessageLen is the default bound on the ciphertext an
	// unchunked opener buffers: 64 MiB. Use WithMaxMessageLen to change it.
	DefaultMaxMessageLen = 64 << 20

	// MaxChunkPlaintextLen is the largest chunk plaintext length an option
	// may set: 16 MiB. Chunked OHTTP recommends 16 KiB.
	MaxChunkPlaintextLen = 16 << 20

	defaultSealerChunkLen = 4096
	defaultOpenerChunkLen = 16384 // Chunked OHTTP: receivers MUST support 2^14
	defaultInitialBuffer  = 4096
)

type opConfig struct {
	chunked               bool
	initialChunkBufferLen int
	maxChunkPlaintextLen  int
	maxMessageLen         int
	chunkPerRead          bool
	lengthHint            int // -1: unknown
}

func newConfig(sealer bool, opts []Option) (*opConfig, error) {
	c := &opConfig{
		initialChunkBufferLen: defaultInitialBuffer,
		maxChunkPlaintextLen:  defaultOpenerChunkLen,
		maxMessageLen:         DefaultMaxMessageLen,
		lengthHint:            -1,
	}
	if sealer {
		c.maxChunkPlaintextLen = defaultSealerChunkLen
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("twoway: nil option")
		}
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	if !sealer && c.initialChunkBufferLen > c.maxChunkPlaintextLen {
		c.initialChunkBufferLen = c.maxChunkPlaintextLen
	}
	return c, nil
}

// Option configures a sealer or an opener.
type Option func(*opConfig) error

// EnableChunking seals (or opens) the message as a sequence of chunks that
// can be produced and consumed incrementally, in the Chunked OHTTP format.
// Both sides of a message must agree on it.
//
// Chunked and unchunked messages must have different media types (as
// RFC 9458's "message/bhttp request" and Chunked OHTTP's "message/bhttp
// chunked request" differ). Neither format says which one it is, and the
// first chunk of a chunked message, without its length prefix, is a valid
// unchunked message under the same key and media type: a receiver that
// opened both kinds under one media type could be handed a truncated
// message that authenticates.
//
// A chunked sealer fills each chunk up to the maximum chunk length (see
// [WithMaxChunkPlaintextLen]) before sealing it, whatever sizes its source's
// Read calls return, so tiny reads do not inflate the message; the last data
// goes into the final chunk. Streaming users who need each Read delivered at
// once (tokens, events) add [WithChunkPerRead].
func EnableChunking() Option {
	return func(c *opConfig) error {
		c.chunked = true
		return nil
	}
}

// WithMaxChunkPlaintextLen sets the maximum plaintext length of a chunk,
// 1 to [MaxChunkPlaintextLen]. Sealers cut chunks at this length (default
// 4096); openers reject larger chunks with [ErrChunkTooLarge] (default
// 16384, the size Chunked OHTTP requires every receiver to accept).
func WithMaxChunkPlaintextLen(n int) Option {
	return func(c *opConfig) error {
		if n < 1 || n > MaxChunkPlaintextLen {
			return fmt.Errorf("twoway: max chunk plaintext length %d out of range [1, %d]", n, MaxChunkPlaintextLen)
		}
		c.maxChunkPlaintextLen = n
		return nil
	}
}

// WithInitialChunkBufferLen sets the initial plaintext capacity of a chunked
// opener's buffer, which grows up to the maximum chunk length when needed.
// Only openers use it; a chunked opener whose caller reads with buffers of
// at least one whole chunk never needs the buffer at all.
func WithInitialChunkBufferLen(n int) Option {
	return func(c *opConfig) error {
		if n < 1 || n > MaxChunkPlaintextLen {
			return fmt.Errorf("twoway: initial chunk buffer length %d out of range [1, %d]", n, MaxChunkPlaintextLen)
		}
		c.initialChunkBufferLen = n
		return nil
	}
}

// WithMaxMessageLen bounds the ciphertext an unchunked opener buffers, in
// bytes (default [DefaultMaxMessageLen]). A longer message fails with
// [ErrMessageTooLarge] before it is allocated. Chunked openers buffer at most
// one chunk and ignore it.
func WithMaxMessageLen(n int) Option {
	return func(c *opConfig) error {
		if n < 1 {
			return fmt.Errorf("twoway: max message length %d must be positive", n)
		}
		c.maxMessageLen = n
		return nil
	}
}

// WithChunkPerRead makes a chunked sealer seal each Read of its source as a
// chunk of its own, as soon as it returns, instead of filling chunks. Use it
// for low-latency streams (server-sent events, generated tokens): every
// write to the source becomes visible to the peer at once. Each chunk costs
// a length prefix and a 16-byte tag, so tiny reads inflate the message.
func WithChunkPerRead() Option {
	return func(c *opConfig) error {
		c.chunkPerRead = true
		return nil
	}
}

// WithLengthHint tells an unchunked sealer or opener how long its input is:
// for a sealer the plaintext, for an opener the whole encapsulated message
// (for example an HTTP Content-Length). The message is then read into one
// buffer of exactly its size, so it costs its own size in memory and no
// more. Sources that report their length (Len, regular files) need no hint.
// A wrong hint costs memory, not correctness.
func WithLengthHint(n int) Option {
	return func(c *opConfig) error {
		if n < 0 {
			return fmt.Errorf("twoway: length hint %d is negative", n)
		}
		c.lengthHint = n
		return nil
	}
}
