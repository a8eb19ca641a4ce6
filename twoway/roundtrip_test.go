package twoway_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// TestSuiteMatrix round-trips one-to-one and one-to-many messages, chunked
// and unchunked, for every KEM, KDF and AEAD.
func TestSuiteMatrix(t *testing.T) {
	for _, k := range allKEMs {
		pk, sk := keyPair(t, k, "matrix")
		for _, f := range allKDFs {
			for _, a := range allAEADs {
				suite := hpke.NewSuite(k, f, a)
				t.Run(twoway.RequestHeader{KemID: k, KDFID: f, AEADID: a}.String(), func(t *testing.T) {
					pt := pattern(300)
					for _, opts := range [][]twoway.Option{nil, {twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(64)}} {
						roundTrip(t, suite, pk, sk, pt, wholeReads, 4096, opts...)
						multiRoundTrip(t, suite, []circlkem.PublicKey{pk}, []circlkem.PrivateKey{sk}, pt, opts...)
					}
				})
			}
		}
	}
}

// TestChunkBoundaries round-trips chunked messages of lengths around the
// chunk size, read by the consumer with buffers smaller than, equal to and
// larger than a chunk, from sources that return whole, partial and one-byte
// reads.
func TestChunkBoundaries(t *testing.T) {
	pk, sk := keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "bounds")
	const chunk = 100
	sources := map[string]func([]byte) io.Reader{
		"whole":  wholeReads,
		"by-7":   func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), 7} },
		"by-1":   func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), 1} },
		"by-150": func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), 150} },
	}
	for _, n := range []int{0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 5*chunk + 17} {
		for sname, src := range sources {
			for _, bufLen := range []int{1, 13, chunk + 16 + 1, chunk + 16 + 2, 4096} {
				for _, perRead := range []bool{false, true} {
					t.Run(fmt.Sprintf("n=%d/src=%s/buf=%d/perRead=%v", n, sname, bufLen, perRead), func(t *testing.T) {
						opts := []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(chunk)}
						if perRead {
							opts = append(opts, twoway.WithChunkPerRead())
						}
						encReq, _ := roundTrip(t, testSuite, pk, sk, pattern(n), src, bufLen, opts...)
						if !perRead {
							// Filled chunks: the overhead is fixed by the
							// length alone, whatever the source's reads.
							chunks := max(1, (n+chunk-1)/chunk)
							maxLen := n + 7 + 32 + chunks*(16+2) + 16 + 1
							if len(encReq) > maxLen {
								t.Fatalf("%d-byte message sealed to %d bytes, want at most %d", n, len(encReq), maxLen)
							}
						}
					})
				}
			}
		}
	}
}

// TestTinyReadsDoNotInflate is the reference's fault: a 1000-byte message
// read one byte at a time became 18 KB. Filled chunks keep it small.
func TestTinyReadsDoNotInflate(t *testing.T) {
	pk, sk := keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "tiny")
	encReq, encResp := roundTrip(t, testSuite, pk, sk, pattern(1000), func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), 1} }, 32<<10, twoway.EnableChunking())
	// header 7 + enc 32 + final chunk (1 + 1000 + 16).
	if len(encReq) != 7+32+1+1000+16 {
		t.Fatalf("request of 1000 bytes read one byte at a time sealed to %d bytes", len(encReq))
	}
	if len(encResp) != 16+1+1003+16 {
		t.Fatalf("response of 1003 bytes read one byte at a time sealed to %d bytes", len(encResp))
	}
}

// TestCustomSuitePath checks that a suite this package does not recognise
// goes through the HPKE interfaces and interoperates with the fast path.
func TestCustomSuitePath(t *testing.T) {
	for _, k := range []hpke.KEM{hpke.KEM_P256_HKDF_SHA256, hpke.KEM_X25519_HKDF_SHA256} {
		circlSuite := hpke.NewSuite(k, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)
		custom := opaqueSuite{twoway.AdaptCirclHPKESuite(circlSuite)}
		pk, sk := keyPair(t, k, "custom")
		for _, opts := range [][]twoway.Option{nil, {twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(50)}} {
			pt := pattern(333)
			// custom sender, fast receiver and back
			snd, err := twoway.NewRequestSenderWithCustomSuite(custom, 1, pk, nil)
			if err != nil {
				t.Fatal(err)
			}
			rcv, err := twoway.NewRequestReceiver(circlSuite, 1, sk, nil)
			if err != nil {
				t.Fatal(err)
			}
			roundTripWith(t, snd, rcv, pt, wholeReads, 4096, opts...)
			// fast sender, custom receiver
			snd2, _ := twoway.NewRequestSender(circlSuite, 1, pk, nil)
			rcv2, err := twoway.NewRequestReceiverWithCustomSuite(custom, 1, sk, nil)
			if err != nil {
				t.Fatal(err)
			}
			roundTripWith(t, snd2, rcv2, pt, wholeReads, 4096, opts...)
			// one-to-many, custom on both sides and mixed
			msnd := twoway.NewMultiRequestSenderWithCustomSuite(custom, nil)
			mrcv, err := twoway.NewMultiRequestReceiver(circlSuite, 1, sk, nil)
			if err != nil {
				t.Fatal(err)
			}
			multiRoundTripWith(t, msnd, []multiReceiver{{1, pk, mrcv}}, pt, opts...)
			mrcv2, _ := twoway.NewMultiRequestReceiverWithCustomSuite(custom, 1, sk, nil)
			multiRoundTripWith(t, twoway.NewMultiRequestSender(circlSuite, nil), []multiReceiver{{1, pk, mrcv2}}, pt, opts...)
		}
	}
}

// opaqueSuite hides a suite's type so that the package cannot recognise it.
type opaqueSuite struct{ twoway.HPKESuite }

func TestMultiSeveralReceivers(t *testing.T) {
	suite := hpke.NewSuite(hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	var pks []circlkem.PublicKey
	var sks []circlkem.PrivateKey
	for i := range 3 {
		pk, sk := keyPair(t, hpke.KEM_P256_HKDF_SHA256, fmt.Sprint("r", i))
		pks, sks = append(pks, pk), append(sks, sk)
	}
	multiRoundTrip(t, suite, pks, sks, pattern(5000))
	multiRoundTrip(t, suite, pks, sks, pattern(5000), twoway.EnableChunking())
}

// TestSealerLen checks Len, HeaderLen and MaxCiphertextChunkLen.
func TestSealerLen(t *testing.T) {
	pk, _ := keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "len")
	snd, _ := twoway.NewRequestSender(testSuite, 1, pk, nil)
	s, err := snd.NewRequestSealer(bytes.NewReader(pattern(100)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := s.Len(); !ok || n != 7+32+100+16 {
		t.Fatalf("Len = %d, %v", n, ok)
	}
	if s.HeaderLen() != 7+32 {
		t.Fatalf("HeaderLen = %d", s.HeaderLen())
	}
	if _, ok := s.MaxCiphertextChunkLen(); ok {
		t.Fatal("unchunked sealer reports a chunk length")
	}
	io.CopyN(io.Discard, s, 10)
	if n, _ := s.Len(); n != 7+32+100+16-10 {
		t.Fatalf("Len after reading 10 bytes = %d", n)
	}
	c, _ := snd.NewRequestSealer(bytes.NewReader(pattern(100)), nil, twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(16384))
	if _, ok := c.Len(); ok {
		t.Fatal("chunked sealer reports a length")
	}
	if n, ok := c.MaxCiphertextChunkLen(); !ok || n != 4+16384+16 {
		t.Fatalf("MaxCiphertextChunkLen = %d, %v", n, ok)
	}
}
