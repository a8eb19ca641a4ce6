package twoway_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// TestNoAllocationPerChunk seals and opens chunked requests and responses of
// 16 and 256 chunks: in steady state a chunk costs no allocation, so both
// sizes allocate the same.
func TestNoAllocationPerChunk(t *testing.T) {
	pk, sk := keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "alloc")
	opts := []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(1024)}
	snd, _ := twoway.NewRequestSender(testSuite, 1, pk, nil)
	rcv, _ := twoway.NewRequestReceiver(testSuite, 1, sk, nil)
	buf := make([]byte, 32<<10)
	small, large := pattern(16*1024), pattern(256*1024)
	encOf := func(pt []byte) ([]byte, *twoway.RequestSealer, *twoway.RequestOpener, []byte) {
		s, _ := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), opts...)
		ct, _ := io.ReadAll(s)
		o, err := rcv.NewRequestOpener(bytes.NewReader(ct), []byte("q"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, o)
		rs, _ := o.NewResponseSealer(bytes.NewReader(pt), []byte("a"), opts...)
		rct, _ := io.ReadAll(rs)
		return ct, s, o, rct
	}
	ctS, sS, oS, rctS := encOf(small)
	ctL, sL, oL, rctL := encOf(large)
	drainAll := func(r io.Reader, err error) {
		if err != nil {
			t.Fatal(err)
		}
		drain(t, r, buf)
	}
	ops := map[string][2]func(){
		"request seal": {
			func() { drainAll(snd.NewRequestSealer(bytes.NewReader(small), []byte("q"), opts...)) },
			func() { drainAll(snd.NewRequestSealer(bytes.NewReader(large), []byte("q"), opts...)) },
		},
		"request open": {
			func() { drainAll(rcv.NewRequestOpener(bytes.NewReader(ctS), []byte("q"), opts...)) },
			func() { drainAll(rcv.NewRequestOpener(bytes.NewReader(ctL), []byte("q"), opts...)) },
		},
		"response seal": {
			func() { drainAll(oS.NewResponseSealer(bytes.NewReader(small), []byte("a"), opts...)) },
			func() { drainAll(oL.NewResponseSealer(bytes.NewReader(large), []byte("a"), opts...)) },
		},
		"response open": {
			func() { drainAll(sS.NewResponseOpener(bytes.NewReader(rctS), []byte("a"), opts...)) },
			func() { drainAll(sL.NewResponseOpener(bytes.NewReader(rctL), []byte("a"), opts...)) },
		},
	}
	for name, f := range ops {
		a16 := testing.AllocsPerRun(20, f[0])
		a256 := testing.AllocsPerRun(20, f[1])
		if a256 > a16+1 {
			t.Errorf("%s: %v allocations for 16 chunks, %v for 256", name, a16, a256)
		}
	}
}
