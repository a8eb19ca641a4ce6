package twoway_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"
	ref "github.com/openpcc/twoway"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The benchmarks compare, side by side in one run, this package ("ours"),
// github.com/openpcc/twoway v0.0.37 ("reference") and the streaming limit
// ("limit": copy each chunk of plaintext once, then seal it in place with
// AES-128-GCM). Run them interleaved, several times, and compare medians:
//
//	go test ./twoway -run '^$' -bench 'Chunked|Unchunked|TinyReads' -count 10

const (
	benchMsgLen   = 16 << 20
	benchChunkLen = 16 << 10
	benchCopyLen  = 32 << 10 // what io.Copy reads with
)

// drain reads r to its end through a 32 KiB buffer, as io.Copy does with a
// reader that has no WriteTo.
func drain(b *testing.B, r io.Reader, buf []byte) int {
	total := 0
	for {
		n, err := r.Read(buf)
		total += n
		if err == io.EOF {
			return total
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

var benchSuite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)

func benchLimit(b *testing.B, pt []byte) {
	block, _ := aes.NewCipher(make([]byte, 16))
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	buf := make([]byte, benchChunkLen+16)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < len(pt); i += benchChunkLen {
			n := copy(buf, pt[i:min(i+benchChunkLen, len(pt))])
			gcm.Seal(buf[:0], nonce, buf[:n], nil)
			nonce[11]++
		}
	}
}

// BenchmarkChunked measures chunked sealing and opening of a 16 MiB message
// in 16 KiB chunks, read through a 32 KiB buffer.
func BenchmarkChunked(b *testing.B) {
	pk, sk := keyPair(b, hpke.KEM_X25519_HKDF_SHA256, "bench")
	pt := pattern(benchMsgLen)
	resp := pattern(benchMsgLen)
	opts := []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(benchChunkLen)}
	refOpts := []ref.Option{ref.EnableChunking(), ref.WithMaxChunkPlaintextLen(benchChunkLen)}
	buf := make([]byte, benchCopyLen)

	// ours
	snd, _ := twoway.NewRequestSender(benchSuite, 1, pk, nil)
	rcv, _ := twoway.NewRequestReceiver(benchSuite, 1, sk, nil)
	s0, _ := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), opts...)
	encReq, _ := io.ReadAll(s0)
	o0, err := rcv.NewRequestOpener(bytes.NewReader(encReq), []byte("q"), opts...)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, o0)
	rs0, _ := o0.NewResponseSealer(bytes.NewReader(resp), []byte("a"), opts...)
	encResp, _ := io.ReadAll(rs0)

	// reference
	rsnd, _ := ref.NewRequestSender(benchSuite, 1, pk, nil)
	rrcv, _ := ref.NewRequestReceiver(benchSuite, 1, sk, nil)
	rs, _ := rsnd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), refOpts...)
	refEncReq, _ := io.ReadAll(rs)
	ro, err := rrcv.NewRequestOpener(bytes.NewReader(refEncReq), []byte("q"), refOpts...)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, ro)
	rrs, _ := ro.NewResponseSealer(bytes.NewReader(resp), []byte("a"), refOpts...)
	refEncResp, _ := io.ReadAll(rrs)

	run := func(b *testing.B, f func() io.Reader) {
		b.SetBytes(benchMsgLen)
		b.ReportAllocs()
		for b.Loop() {
			if n := drain(b, f(), buf); n < benchMsgLen {
				b.Fatalf("read %d bytes", n)
			}
		}
	}
	must := func(r io.Reader, err error) io.Reader {
		if err != nil {
			b.Fatal(err)
		}
		return r
	}

	b.Run("op=RequestSeal/impl=limit", func(b *testing.B) { benchLimit(b, pt) })
	b.Run("op=RequestSeal/impl=ours", func(b *testing.B) {
		run(b, func() io.Reader { return must(snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), opts...)) })
	})
	b.Run("op=RequestSeal/impl=reference", func(b *testing.B) {
		run(b, func() io.Reader { return must(rsnd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), refOpts...)) })
	})
	b.Run("op=RequestOpen/impl=limit", func(b *testing.B) { benchLimit(b, pt) })
	b.Run("op=RequestOpen/impl=ours", func(b *testing.B) {
		run(b, func() io.Reader { return must(rcv.NewRequestOpener(bytes.NewReader(encReq), []byte("q"), opts...)) })
	})
	b.Run("op=RequestOpen/impl=reference", func(b *testing.B) {
		run(b, func() io.Reader {
			return must(rrcv.NewRequestOpener(bytes.NewReader(refEncReq), []byte("q"), refOpts...))
		})
	})
	b.Run("op=ResponseSeal/impl=limit", func(b *testing.B) { benchLimit(b, pt) })
	b.Run("op=ResponseSeal/impl=ours", func(b *testing.B) {
		run(b, func() io.Reader { return must(o0.NewResponseSealer(bytes.NewReader(resp), []byte("a"), opts...)) })
	})
	b.Run("op=ResponseSeal/impl=reference", func(b *testing.B) {
		run(b, func() io.Reader { return must(ro.NewResponseSealer(bytes.NewReader(resp), []byte("a"), refOpts...)) })
	})
	b.Run("op=ResponseOpen/impl=limit", func(b *testing.B) { benchLimit(b, pt) })
	b.Run("op=ResponseOpen/impl=ours", func(b *testing.B) {
		run(b, func() io.Reader { return must(s0.NewResponseOpener(bytes.NewReader(encResp), []byte("a"), opts...)) })
	})
	b.Run("op=ResponseOpen/impl=reference", func(b *testing.B) {
		run(b, func() io.Reader {
			return must(rs.NewResponseOpener(bytes.NewReader(refEncResp), []byte("a"), refOpts...))
		})
	})
}

// BenchmarkUnchunkedOverhead measures one unchunked request and response
// round trip of a 1 KiB message. "hpke" is the HPKE work itself with circl
// (sender and receiver setup, seal, open, export); the difference to it is
// what the message layer costs.
func BenchmarkUnchunkedOverhead(b *testing.B) {
	pk, sk := keyPair(b, hpke.KEM_X25519_HKDF_SHA256, "bench")
	pt := pattern(1024)
	buf := make([]byte, 4096)
	b.Run("impl=hpke", func(b *testing.B) {
		info := []byte("q\x00header!")
		b.ReportAllocs()
		for b.Loop() {
			s, _ := benchSuite.NewSender(pk, info)
			enc, sealer, err := s.Setup(nil)
			if err != nil {
				b.Fatal(err)
			}
			ct, _ := sealer.Seal(pt, nil)
			r, _ := benchSuite.NewReceiver(sk, info)
			opener, err := r.Setup(enc)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := opener.Open(ct, nil); err != nil {
				b.Fatal(err)
			}
			opener.Export([]byte("a"), 16)
			sealer.Export([]byte("a"), 16)
		}
	})
	b.Run("impl=ours", func(b *testing.B) {
		snd, _ := twoway.NewRequestSender(benchSuite, 1, pk, nil)
		rcv, _ := twoway.NewRequestReceiver(benchSuite, 1, sk, nil)
		b.ReportAllocs()
		for b.Loop() {
			s, _ := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"))
			n, _ := io.ReadFull(s, buf[:len(pt)+7+32+16])
			o, err := rcv.NewRequestOpener(bytes.NewReader(buf[:n]), []byte("q"))
			if err != nil {
				b.Fatal(err)
			}
			drain(b, o, buf)
			rs, _ := o.NewResponseSealer(bytes.NewReader(pt), []byte("a"))
			n, _ = io.ReadFull(rs, buf[:len(pt)+16+16])
			ro, err := s.NewResponseOpener(bytes.NewReader(buf[:n]), []byte("a"))
			if err != nil {
				b.Fatal(err)
			}
			drain(b, ro, buf)
		}
	})
	b.Run("impl=reference", func(b *testing.B) {
		snd, _ := ref.NewRequestSender(benchSuite, 1, pk, nil)
		rcv, _ := ref.NewRequestReceiver(benchSuite, 1, sk, nil)
		b.ReportAllocs()
		for b.Loop() {
			s, _ := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"))
			n, _ := io.ReadFull(s, buf[:len(pt)+7+32+16])
			o, err := rcv.NewRequestOpener(bytes.NewReader(buf[:n]), []byte("q"))
			if err != nil {
				b.Fatal(err)
			}
			drain(b, o, buf)
			rs, _ := o.NewResponseSealer(bytes.NewReader(pt), []byte("a"))
			n, _ = io.ReadFull(rs, buf[:len(pt)+16+16])
			ro, err := s.NewResponseOpener(bytes.NewReader(buf[:n]), []byte("a"))
			if err != nil {
				b.Fatal(err)
			}
			drain(b, ro, buf)
		}
	})
}

// BenchmarkUnchunkedMemory seals and opens a 16 MiB unchunked request and
// reports bytes allocated per message byte ("alloc/msg"), an upper bound on
// the peak memory a message costs.
func BenchmarkUnchunkedMemory(b *testing.B) {
	pk, sk := keyPair(b, hpke.KEM_X25519_HKDF_SHA256, "bench")
	pt := pattern(benchMsgLen)
	buf := make([]byte, benchCopyLen)
	snd, _ := twoway.NewRequestSender(benchSuite, 1, pk, nil)
	rcv, _ := twoway.NewRequestReceiver(benchSuite, 1, sk, nil)
	s0, _ := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"))
	ct, _ := io.ReadAll(s0)
	rsnd, _ := ref.NewRequestSender(benchSuite, 1, pk, nil)
	rrcv, _ := ref.NewRequestReceiver(benchSuite, 1, sk, nil)
	measure := func(b *testing.B, f func()) {
		b.SetBytes(benchMsgLen)
		b.ReportAllocs()
		for b.Loop() {
			f()
		}
	}
	report := func(b *testing.B) {
		// B/op is reported by the framework; alloc/msg is derived from it
		// by scripts/benchtable.
	}
	b.Run("op=Seal/impl=ours", func(b *testing.B) {
		measure(b, func() {
			s, _ := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"))
			drain(b, s, buf)
		})
		report(b)
	})
	b.Run("op=Seal/impl=reference", func(b *testing.B) {
		measure(b, func() {
			s, _ := rsnd.NewRequestSealer(bytes.NewReader(pt), []byte("q"))
			drain(b, s, buf)
		})
	})
	b.Run("op=Open/impl=ours", func(b *testing.B) {
		measure(b, func() {
			o, err := rcv.NewRequestOpener(bytes.NewReader(ct), []byte("q"))
			if err != nil {
				b.Fatal(err)
			}
			drain(b, o, buf)
		})
	})
	b.Run("op=Open/impl=reference", func(b *testing.B) {
		measure(b, func() {
			o, err := rrcv.NewRequestOpener(bytes.NewReader(ct), []byte("q"))
			if err != nil {
				b.Fatal(err)
			}
			drain(b, o, buf)
		})
	})
}

// BenchmarkTinyReads seals a 1000-byte chunked message whose source returns
// one byte per Read and reports the ciphertext size ("ct-bytes").
func BenchmarkTinyReads(b *testing.B) {
	pk, _ := keyPair(b, hpke.KEM_X25519_HKDF_SHA256, "bench")
	pt := pattern(1000)
	buf := make([]byte, benchCopyLen)
	b.Run("impl=ours", func(b *testing.B) {
		snd, _ := twoway.NewRequestSender(benchSuite, 1, pk, nil)
		n := 0
		for b.Loop() {
			s, _ := snd.NewRequestSealer(&trickle{bytes.NewReader(pt), 1}, []byte("q"), twoway.EnableChunking())
			n = drain(b, s, buf)
		}
		b.ReportMetric(float64(n), "ct-bytes")
	})
	b.Run("impl=reference", func(b *testing.B) {
		snd, _ := ref.NewRequestSender(benchSuite, 1, pk, nil)
		n := 0
		for b.Loop() {
			s, _ := snd.NewRequestSealer(&trickle{bytes.NewReader(pt), 1}, []byte("q"), ref.EnableChunking())
			n = drain(b, s, buf)
		}
		b.ReportMetric(float64(n), "ct-bytes")
	})
}
