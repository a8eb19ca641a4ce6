package twoway

import (
	"bytes"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"
)

// A chunked opener read with buffers that hold a whole chunk opens every
// chunk, the final one too, in the caller's buffer: it never allocates one
// of its own (as WithInitialChunkBufferLen's documentation says).
func TestWholeChunkReadsNeedNoBuffer(t *testing.T) {
	suite := hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	pk, sk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	snd, err := NewRequestSender(suite, 1, pk, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := NewRequestReceiver(suite, 1, sk, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := []Option{EnableChunking(), WithMaxChunkPlaintextLen(1024)}
	for _, size := range []int{0, 1000, 1024, 5 * 1024, 5*1024 + 7} {
		msg := bytes.Repeat([]byte{0x5a}, size)
		s, err := snd.NewRequestSealer(bytes.NewReader(msg), []byte("q"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := io.ReadAll(s)
		if err != nil {
			t.Fatal(err)
		}
		o, err := rcv.NewRequestOpener(bytes.NewReader(ct), []byte("q"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		co, ok := o.r.(*chunkOpener)
		if !ok {
			t.Fatalf("the opener reads through a %T, not a *chunkOpener", o.r)
		}
		var got []byte
		buf := make([]byte, 1024+16+1)
		for {
			n, err := o.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%d bytes: %v", size, err)
			}
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: opened to %d other bytes", size, len(got))
		}
		if co.buf != nil {
			t.Errorf("%d bytes: the opener allocated a %d-byte buffer", size, cap(co.buf))
		}
	}
}
