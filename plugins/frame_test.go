package plugins

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// withLength returns a frame of b's header with payload length n, and
// room for 64 bytes of payload.
func withLength(f frame, n uint32) []byte {
	b := make([]byte, frameHeaderSize+64)
	putHeader(b, f)
	binary.LittleEndian.PutUint32(b, n)
	return b
}

// TestFrameLengthBound: both decoders refuse a length above their bound,
// up to the largest a header holds, and compare it before it becomes an
// int; a refused frame carries no length. (Converted first, 2³¹ and more
// are negative on 32-bit systems: a length of 0xFFFFFFFF passed the bound
// as -1, the "frame" was 23 bytes, and slicing its payload, b[24:23],
// crashed the host or the plugin.)
func TestFrameLengthBound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decode func([]byte) (frame, int, error)
		f      frame
		max    uint32
	}{
		{"request", decodeRequest, frame{kind: frameECDH, id: 1}, maxRequestPayload},
		{"response", decodeResponse, frame{kind: frameError, code: 3, id: 1}, maxResponsePayload},
	} {
		for _, n := range []uint32{tc.max + 1, 1 << 31, 0xFFFFFFF0, math.MaxUint32} {
			f, size, err := tc.decode(withLength(tc.f, n))
			if !errors.Is(err, errProtocol) || size != 0 {
				t.Errorf("%s of %d bytes: size %d, error %v; want a protocol violation", tc.name, n, size, err)
			} else if f.n != 0 {
				t.Errorf("%s of %d bytes: refused, with the frame's payload length set to %d; want none", tc.name, n, f.n)
			}
		}
		// At the bound: a frame that waits for its payload, then is whole.
		b := withLength(tc.f, tc.max)
		if _, size, err := tc.decode(b); size != 0 || err != nil {
			t.Errorf("%s of %d bytes, %d of them read: size %d, error %v; want to wait", tc.name, tc.max, len(b)-frameHeaderSize, size, err)
		}
		b = append(b, make([]byte, tc.max-64)...)
		if f, size, err := tc.decode(b); size != len(b) || f.n != int(tc.max) || err != nil {
			t.Errorf("%s of %d bytes: size %d, payload length %d, error %v; want the whole frame", tc.name, tc.max, size, f.n, err)
		}
	}
}
