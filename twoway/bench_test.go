package twoway_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io"
	"runtime"
	"slices"
	"testing"
	"time"

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

// chunkedOp is one operation of the chunked benchmarks in each
// implementation: a function that runs it once over a 16 MiB message.
type chunkedOp struct {
	name  string
	impls []chunkedImpl
}

type chunkedImpl struct {
	name string
	run  func(b *testing.B)
}

// chunkedOps prepares the chunked benchmarks: 16 MiB messages in 16 KiB
// chunks, read through a 32 KiB buffer.
func chunkedOps(b *testing.B) []chunkedOp {
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

	// the streaming limit: copy each chunk of plaintext once, then seal it
	// in place with AES-128-GCM
	block, _ := aes.NewCipher(make([]byte, 16))
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	cbuf := make([]byte, benchChunkLen+16)
	limit := chunkedImpl{"limit", func(b *testing.B) {
		for i := 0; i < len(pt); i += benchChunkLen {
			n := copy(cbuf, pt[i:min(i+benchChunkLen, len(pt))])
			gcm.Seal(cbuf[:0], nonce, cbuf[:n], nil)
			nonce[11]++
		}
	}}

	reader := func(f func() (io.Reader, error)) func(b *testing.B) {
		return func(b *testing.B) {
			r, err := f()
			if err != nil {
				b.Fatal(err)
			}
			if n := drain(b, r, buf); n < benchMsgLen {
				b.Fatalf("read %d bytes", n)
			}
		}
	}
	return []chunkedOp{
		{"RequestSeal", []chunkedImpl{limit,
			{"ours", reader(func() (io.Reader, error) { return snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), opts...) })},
			{"reference", reader(func() (io.Reader, error) { return rsnd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), refOpts...) })},
		}},
		{"RequestOpen", []chunkedImpl{limit,
			{"ours", reader(func() (io.Reader, error) {
				return rcv.NewRequestOpener(bytes.NewReader(encReq), []byte("q"), opts...)
			})},
			{"reference", reader(func() (io.Reader, error) {
				return rrcv.NewRequestOpener(bytes.NewReader(refEncReq), []byte("q"), refOpts...)
			})},
		}},
		{"ResponseSeal", []chunkedImpl{limit,
			{"ours", reader(func() (io.Reader, error) { return o0.NewResponseSealer(bytes.NewReader(resp), []byte("a"), opts...) })},
			{"reference", reader(func() (io.Reader, error) { return ro.NewResponseSealer(bytes.NewReader(resp), []byte("a"), refOpts...) })},
		}},
		{"ResponseOpen", []chunkedImpl{limit,
			{"ours", reader(func() (io.Reader, error) { return s0.NewResponseOpener(bytes.NewReader(encResp), []byte("a"), opts...) })},
			{"reference", reader(func() (io.Reader, error) {
				return rs.NewResponseOpener(bytes.NewReader(refEncResp), []byte("a"), refOpts...)
			})},
		}},
	}
}

// BenchmarkChunked runs each implementation of each operation as its own
// sub-benchmark, for allocations per operation.
func BenchmarkChunked(b *testing.B) {
	for _, op := range chunkedOps(b) {
		for _, impl := range op.impls {
			b.Run("op="+op.name+"/impl="+impl.name, func(b *testing.B) {
				b.SetBytes(benchMsgLen)
				b.ReportAllocs()
				for b.Loop() {
					impl.run(b)
				}
			})
		}
	}
}

// BenchmarkChunkedPaired runs the implementations of each operation in turn
// within every iteration, so that they share the machine's noise, and
// reports each one's median throughput ("<impl>-MB/s") and the ratios of
// the medians ("ours/limit", "ours/reference").
func BenchmarkChunkedPaired(b *testing.B) {
	for _, op := range chunkedOps(b) {
		b.Run("op="+op.name, func(b *testing.B) {
			durs := make([][]time.Duration, len(op.impls))
			i := 0
			for b.Loop() {
				for k := range op.impls {
					j := (k + i) % len(op.impls)
					start := time.Now()
					op.impls[j].run(b)
					durs[j] = append(durs[j], time.Since(start))
				}
				i++
			}
			mbps := map[string]float64{}
			for j, impl := range op.impls {
				mbps[impl.name] = benchMsgLen / medianDuration(durs[j]).Seconds() / 1e6
				b.ReportMetric(mbps[impl.name], impl.name+"-MB/s")
			}
			b.ReportMetric(mbps["ours"]/mbps["limit"], "ours/limit")
			b.ReportMetric(mbps["ours"]/mbps["reference"], "ours/reference")
			b.ReportMetric(mbps["reference"]/mbps["limit"], "reference/limit")
			b.ReportMetric(0, "ns/op") // the per-iteration time mixes three implementations
		})
	}
}

func medianDuration(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// overheadImpls are the implementations of one unchunked request and
// response round trip of a 1 KiB message. "bare" is the cryptographic work
// RFC 9458 requires, done directly with circl and no message layer: HPKE
// setup on both sides, seal and open of the request, and on both sides the
// export and HKDF that derive the response key, then seal and open of the
// response. What "ours" and the reference cost beyond it is what their
// message layers cost.
func overheadImpls(b *testing.B) []chunkedImpl {
	pk, sk := keyPair(b, hpke.KEM_X25519_HKDF_SHA256, "bench")
	pt := pattern(1024)
	buf := make([]byte, 4096)
	info := []byte("q\x00header!")
	snd, _ := twoway.NewRequestSender(benchSuite, 1, pk, nil)
	rcv, _ := twoway.NewRequestReceiver(benchSuite, 1, sk, nil)
	rsnd, _ := ref.NewRequestSender(benchSuite, 1, pk, nil)
	rrcv, _ := ref.NewRequestReceiver(benchSuite, 1, sk, nil)
	_, kdf, aead := benchSuite.Params()
	responseKey := func(e interface{ Export([]byte, uint) []byte }, enc, nonce []byte) (cipher.AEAD, []byte) {
		secret := e.Export([]byte("a"), 16)
		prk := kdf.Extract(secret, append(append([]byte(nil), enc...), nonce...))
		c, _ := aead.New(kdf.Expand(prk, []byte("key"), 16))
		return c, kdf.Expand(prk, []byte("nonce"), 12)
	}
	return []chunkedImpl{
		{"bare", func(b *testing.B) {
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
			nonce := make([]byte, 16)
			rand.Read(nonce)
			c, n := responseKey(opener, enc, nonce)
			rct := c.Seal(nil, n, pt, nil)
			c, n = responseKey(sealer, enc, nonce)
			if _, err := c.Open(nil, n, rct, nil); err != nil {
				b.Fatal(err)
			}
		}},
		{"ours", func(b *testing.B) {
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
		}},
		{"reference", func(b *testing.B) {
			s, _ := rsnd.NewRequestSealer(bytes.NewReader(pt), []byte("q"))
			n, _ := io.ReadFull(s, buf[:len(pt)+7+32+16])
			o, err := rrcv.NewRequestOpener(bytes.NewReader(buf[:n]), []byte("q"))
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
		}},
	}
}

// BenchmarkUnchunkedOverhead runs each implementation of the round trip as
// its own sub-benchmark, for allocations per round trip.
func BenchmarkUnchunkedOverhead(b *testing.B) {
	for _, impl := range overheadImpls(b) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				impl.run(b)
			}
		})
	}
}

// BenchmarkUnchunkedOverheadPaired runs the implementations in turn within
// every iteration and reports their median times ("<impl>-µs") and what
// ours and the reference cost beyond the bare cryptographic work
// ("ours-bare-µs", "reference-bare-µs").
func BenchmarkUnchunkedOverheadPaired(b *testing.B) {
	impls := overheadImpls(b)
	durs := make([][]time.Duration, len(impls))
	i := 0
	for b.Loop() {
		for k := range impls {
			j := (k + i) % len(impls)
			start := time.Now()
			impls[j].run(b)
			durs[j] = append(durs[j], time.Since(start))
		}
		i++
	}
	us := map[string]float64{}
	for j, impl := range impls {
		us[impl.name] = float64(medianDuration(durs[j]).Nanoseconds()) / 1e3
		b.ReportMetric(us[impl.name], impl.name+"-µs")
	}
	b.ReportMetric(us["ours"]-us["bare"], "ours-bare-µs")
	b.ReportMetric(us["reference"]-us["bare"], "reference-bare-µs")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkUnchunkedMemory seals and opens a 16 MiB unchunked request and
// reports bytes allocated per message byte ("alloc/msg"), an upper bound on
// the memory a message adds at its peak.
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
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		n := 0
		for b.Loop() {
			f()
			n++
		}
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n)/benchMsgLen, "alloc/msg")
	}
	b.Run("op=Seal/impl=ours", func(b *testing.B) {
		measure(b, func() {
			s, _ := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"))
			drain(b, s, buf)
		})
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
	// A body of unknown length, as an HTTP request body without a
	// Content-Length hint.
	b.Run("op=OpenUnknownLength/impl=ours", func(b *testing.B) {
		measure(b, func() {
			o, err := rcv.NewRequestOpener(struct{ io.Reader }{bytes.NewReader(ct)}, []byte("q"))
			if err != nil {
				b.Fatal(err)
			}
			drain(b, o, buf)
		})
	})
	b.Run("op=OpenUnknownLength/impl=reference", func(b *testing.B) {
		measure(b, func() {
			o, err := rrcv.NewRequestOpener(struct{ io.Reader }{bytes.NewReader(ct)}, []byte("q"))
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
