package twoway

import (
	"errors"
	"fmt"
	"io"
)

// Errors that openers and sealers return, wrapped with context. Test for
// them with errors.Is.
var (
	// ErrTruncated means the message ended early: before its header, inside a
	// chunk, or without a final chunk. Errors wrapping it also wrap
	// io.ErrUnexpectedEOF, and never io.EOF.
	ErrTruncated = errors.New("twoway: message truncated")

	// ErrAuthentication means a ciphertext failed authentication: a bit was
	// flipped, data was appended, the media type or key is not the one it was
	// sealed for, or chunks were reordered.
	ErrAuthentication = errors.New("twoway: message authentication failed")

	// ErrMessageTooLarge means an unchunked message exceeds the opener's
	// maximum (see WithMaxMessageLen).
	ErrMessageTooLarge = errors.New("twoway: message too large")

	// ErrChunkTooLarge means a chunk exceeds the opener's maximum chunk
	// length (see WithMaxChunkPlaintextLen).
	ErrChunkTooLarge = errors.New("twoway: chunk too large")

	// ErrEmptyChunk means a non-final chunk carried no data, which
	// draft-ietf-ohai-chunked-ohttp forbids.
	ErrEmptyChunk = errors.New("twoway: empty non-final chunk")

	// ErrMalformed means the framing of a message is invalid: a chunk shorter
	// than the AEAD tag, a bad length prefix, a bad encapsulated key.
	ErrMalformed = errors.New("twoway: malformed message")

	// ErrHeaderMismatch means the request header names a key id or suite
	// other than the receiver's.
	ErrHeaderMismatch = errors.New("twoway: request header does not match the receiver")

	// ErrUnsupportedSuite means a KEM, KDF or AEAD identifier is not one this
	// package implements.
	ErrUnsupportedSuite = errors.New("twoway: unsupported HPKE suite")
)

// truncated returns an error wrapping ErrTruncated and io.ErrUnexpectedEOF.
func truncated(what string) error {
	return fmt.Errorf("%w: %s: %w", ErrTruncated, what, io.ErrUnexpectedEOF)
}

// readFull is io.ReadFull whose end-of-stream errors say what was being read
// and wrap ErrTruncated and io.ErrUnexpectedEOF rather than io.EOF.
func readFull(r io.Reader, p []byte, what string) error {
	if _, err := io.ReadFull(r, p); err != nil {
		return readError(err, what)
	}
	return nil
}

// readError is the error of readFull for the error io.ReadFull returned.
func readError(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return truncated(what)
	}
	return fmt.Errorf("twoway: read %s: %w", what, err)
}
