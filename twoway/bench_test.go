package twoway_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"
	ref "github.com/openpcc/twoway"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/twoway-hsm/twoway-hsm/internal/latency"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The benchmarks compare, side by side in one run, this package ("ours"),
// github.com/openpcc/twoway v0.0.37 ("reference") and the streaming limit
// ("limit": copy each chunk of plaintext once, then seal it in place with
// AES-128-GCM). Run them interleaved, several times, and compare medians:
//
//	go test ./twoway -run '^$' -bench 'Chunked|Unchunked|TinyReads' -count 5
//
// (the README's chunked table: -bench ChunkedPaired -count 15).

const (
	benchMsgLen   = 16 << 20
	benchChunkLen = 16 << 10
	benchCopyLen  = 32 << 10 // what io.Copy reads with
)

// benchOp is one operation of a benchmark, in each implementation.
type benchOp struct {
	name  string
	impls []benchImpl
}

// benchImpl is one implementation of an operation: a function that runs it
// once.
type benchImpl struct {
	name string
	run  func(b *testing.B)
}

// bodyReader hides a source's WriterTo, ByteReader and Len, as an HTTP
// request or response body does: the chunked benchmarks, and the memory
// benchmark's open of unknown length, read their sources through it
// (bodyOf). The known-length rows read a bytes.Reader, which keeps them
// all (this package uses only its Len; the reference may use more).
type bodyReader struct{ r io.Reader }

func (b *bodyReader) Read(p []byte) (int, error) { return b.r.Read(p) }

// bodyOf returns a bodyReader of b.
func bodyOf(b []byte) io.Reader { return &bodyReader{bytes.NewReader(b)} }

// drainBody returns a benchmark body that seals or opens src(in) with
// newReader (a sealer or opener constructor) and reads the result to its
// end through buf. The result must be a whole benchMsgLen-byte message or
// longer.
//
// The media type is converted once, here: passed through a function value,
// a []byte(...) made per call would escape and count as an allocation of
// the implementation.
func drainBody[O any, R io.Reader](newReader func(io.Reader, []byte, ...O) (R, error), src func([]byte) io.Reader, in []byte, mediaType string, opts []O, buf []byte) func(b *testing.B) {
	mt := []byte(mediaType)
	return func(b *testing.B) {
		r, err := newReader(src(in), mt, opts...)
		if err != nil {
			b.Fatal(err)
		}
		if n := drain(b, r, buf); n < benchMsgLen {
			b.Fatalf("read %d bytes", n)
		}
	}
}

// chunkedRuns seals a request of pt and a response of resp with one
// implementation's sealer and opener constructors, and returns the bodies
// of its four chunked operations (request seal and open, response seal and
// open, each from a source that hides WriterTo and ByteReader, bodyOf, and
// read through buf) and their sources: pt, the sealed request, resp and the
// sealed response.
func chunkedRuns[O any, S requestSealer[O], Op requestOpener[O, RS], RS io.Reader](b *testing.B, newSealer func(io.Reader, []byte, ...O) (S, error), newOpener func(io.Reader, []byte, ...O) (Op, error), opts []O, pt, resp, buf []byte) ([4]func(*testing.B), [4][]byte) {
	s, err := newSealer(bytes.NewReader(pt), []byte("q"), opts...)
	if err != nil {
		b.Fatal(err)
	}
	encReq, _ := io.ReadAll(s)
	o, err := newOpener(bytes.NewReader(encReq), []byte("q"), opts...)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, o)
	rs, err := o.NewResponseSealer(bytes.NewReader(resp), []byte("a"), opts...)
	if err != nil {
		b.Fatal(err)
	}
	encResp, _ := io.ReadAll(rs)
	return [4]func(*testing.B){
		drainBody(newSealer, bodyOf, pt, "q", opts, buf),
		drainBody(newOpener, bodyOf, encReq, "q", opts, buf),
		drainBody(o.NewResponseSealer, bodyOf, resp, "a", opts, buf),
		drainBody(s.NewResponseOpener, bodyOf, encResp, "a", opts, buf),
	}, [4][]byte{pt, encReq, resp, encResp}
}

// The sizes the chunked benchmarks read with: io.Copy's buffer, which holds
// two 16 KiB chunks, and io.Discard's (bufio's), which holds none.
var benchReadLens = []struct {
	name string
	n    int
}{{"32KiB", benchCopyLen}, {"8KiB", 8 << 10}}

// chunkedOps prepares the chunked benchmarks: 16 MiB messages in 16 KiB
// chunks, read through a buffer of readLen bytes.
//
// "limit" is the streaming limit: copy each 16 KiB chunk once from the
// operation's own source (the plaintext for seals, the sealed message for
// opens, the buffer ours reads), then seal it in place with AES-128-GCM.
// The opens also get "limit-open": copy each sealed chunk once from a
// message laid out as ours (prefix, 4-byte length prefixes), then open it in
// place, for AES-GCM opens more slowly than it seals.
func chunkedOps(b *testing.B, readLen int) []benchOp {
	pk, sk := keyPair(b, hpke.KEM_X25519_HKDF_SHA256, "bench")
	pt := pattern(benchMsgLen)
	resp := pattern(benchMsgLen)
	buf := make([]byte, readLen)
	ours, srcs := chunkedRuns(b,
		must(twoway.NewRequestSender(testSuite, 1, pk, nil)).NewRequestSealer,
		must(twoway.NewRequestReceiver(testSuite, 1, sk, nil)).NewRequestOpener,
		[]twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(benchChunkLen)},
		pt, resp, buf)
	reference, _ := chunkedRuns(b,
		must(ref.NewRequestSender(testSuite, 1, pk, nil)).NewRequestSealer,
		must(ref.NewRequestReceiver(testSuite, 1, sk, nil)).NewRequestOpener,
		[]ref.Option{ref.EnableChunking(), ref.WithMaxChunkPlaintextLen(benchChunkLen)},
		pt, resp, buf)

	block, _ := aes.NewCipher(make([]byte, 16))
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	cbuf := make([]byte, benchChunkLen+16)
	limit := func(src []byte) benchImpl {
		return benchImpl{"limit", func(b *testing.B) {
			for i := 0; i < benchMsgLen; i += benchChunkLen {
				n := copy(cbuf, src[i:i+benchChunkLen])
				gcm.Seal(cbuf[:0], nonce, cbuf[:n], nil)
				nonce[11]++
			}
		}}
	}
	// limitOpen opens 1024 chunks sealed under nonces 0 to 1023, laid out
	// as ours are: prefix bytes, then each chunk behind its 4-byte length.
	limitOpen := func(prefix int) benchImpl {
		const ctLen = benchChunkLen + 16
		msg := make([]byte, prefix, prefix+benchMsgLen/benchChunkLen*(4+ctLen))
		var nn [12]byte
		for i := 0; i < benchMsgLen; i += benchChunkLen {
			binary.BigEndian.PutUint32(nn[8:], uint32(i/benchChunkLen))
			msg = quicvarint.Append(msg, ctLen)
			msg = gcm.Seal(msg, nn[:], pt[i:i+benchChunkLen], nil)
		}
		return benchImpl{"limit-open", func(b *testing.B) {
			off := prefix
			for i := range benchMsgLen / benchChunkLen {
				binary.BigEndian.PutUint32(nn[8:], uint32(i))
				off += 4
				n := copy(cbuf, msg[off:off+ctLen])
				off += n
				if _, err := gcm.Open(cbuf[:0], nn[:], cbuf[:n], nil); err != nil {
					b.Fatal(err)
				}
			}
		}}
	}
	headers := [4]int{0, 7 + 32, 0, 16} // what precedes an open's first chunk

	// A request's seal and open also do its HPKE setup once per message,
	// which the limits do not: "limit+hpke" and "limit-open+hpke" are the
	// limits after the setup, as circl does it (the sender's
	// encapsulation: an ephemeral X25519 key pair and one X25519; the
	// receiver's decapsulation: one X25519), each with its key schedule.
	info := []byte("q\x00header!")
	sender, err := testSuite.NewSender(pk, info)
	if err != nil {
		b.Fatal(err)
	}
	enc, _, err := sender.Setup(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	withSetup := func(name string, setup func() error, impl benchImpl) benchImpl {
		return benchImpl{name, func(b *testing.B) {
			if err := setup(); err != nil {
				b.Fatal(err)
			}
			impl.run(b)
		}}
	}
	setups := [2]benchImpl{
		withSetup("limit+hpke", func() error {
			_, _, err := sender.Setup(rand.Reader)
			return err
		}, limit(srcs[0])),
		withSetup("limit-open+hpke", func() error {
			r, err := testSuite.NewReceiver(sk, info)
			if err == nil {
				_, err = r.Setup(enc)
			}
			return err
		}, limitOpen(headers[1])),
	}

	var ops []benchOp
	for i, name := range []string{"RequestSeal", "RequestOpen", "ResponseSeal", "ResponseOpen"} {
		impls := []benchImpl{limit(srcs[i]), {"ours", ours[i]}, {"reference", reference[i]}}
		if i%2 == 1 {
			impls = append(impls, limitOpen(headers[i]))
		}
		if i < 2 {
			impls = append(impls, setups[i])
		}
		ops = append(ops, benchOp{name, impls})
	}
	return ops
}

// BenchmarkChunked runs each implementation of each operation as its own
// sub-benchmark, for allocations per operation.
func BenchmarkChunked(b *testing.B) {
	for _, op := range chunkedOps(b, benchCopyLen) {
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
// the medians ("ours/limit", "ours/reference", for the opens
// "ours/limit-open", and for the request's seal and open, which pay an HPKE
// setup per message, "ours/limit+hpke" and "ours/limit-open+hpke"), for
// reads of 32 KiB (io.Copy's) and 8 KiB (io.Discard's).
func BenchmarkChunkedPaired(b *testing.B) {
	for _, rl := range benchReadLens {
		for _, op := range chunkedOps(b, rl.n) {
			b.Run("op="+op.name+"/read="+rl.name, func(b *testing.B) {
				meds := pairedMedians(b, op.impls)
				mbps := map[string]float64{}
				for j, impl := range op.impls {
					mbps[impl.name] = benchMsgLen / meds[j].Seconds() / 1e6
					b.ReportMetric(mbps[impl.name], impl.name+"-MB/s")
				}
				b.ReportMetric(mbps["ours"]/mbps["limit"], "ours/limit")
				b.ReportMetric(mbps["ours"]/mbps["reference"], "ours/reference")
				b.ReportMetric(mbps["reference"]/mbps["limit"], "reference/limit")
				if lo, ok := mbps["limit-open"]; ok {
					b.ReportMetric(mbps["ours"]/lo, "ours/limit-open")
					b.ReportMetric(lo/mbps["limit"], "limit-open/limit")
				}
				for _, name := range []string{"limit+hpke", "limit-open+hpke"} {
					if l, ok := mbps[name]; ok {
						b.ReportMetric(mbps["ours"]/l, "ours/"+name)
					}
				}
				b.ReportMetric(0, "ns/op") // the per-iteration time mixes the implementations
			})
		}
	}
}

// pairedMedians runs the implementations in turn within every iteration
// of b, each iteration starting with the next one, so that they share the
// machine's noise, and returns the median time of each.
func pairedMedians(b *testing.B, impls []benchImpl) []time.Duration {
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
	meds := make([]time.Duration, len(impls))
	for j, d := range durs {
		meds[j] = latency.Percentile(d, 50)
	}
	return meds
}

// overheadImpls are the implementations of one unchunked request and
// response round trip of a 1 KiB message. "bare" is the cryptographic work
// RFC 9458 requires, done directly with circl and no message layer: HPKE
// setup on both sides, seal and open of the request, and on both sides the
// export and HKDF that derive the response key, then seal and open of the
// response. What "ours" and the reference cost beyond it is what their
// message layers cost.
func overheadImpls(b *testing.B) []benchImpl {
	pk, sk := keyPair(b, hpke.KEM_X25519_HKDF_SHA256, "bench")
	pt := pattern(1024)
	buf := make([]byte, 4096)
	info := []byte("q\x00header!")
	_, kdf, aead := testSuite.Params()
	responseKey := func(e interface{ Export([]byte, uint) []byte }, enc, nonce []byte) (cipher.AEAD, []byte) {
		secret := e.Export([]byte("a"), 16)
		prk := kdf.Extract(secret, append(append([]byte(nil), enc...), nonce...))
		c, _ := aead.New(kdf.Expand(prk, []byte("key"), 16))
		return c, kdf.Expand(prk, []byte("nonce"), 12)
	}
	return []benchImpl{
		{"bare", func(b *testing.B) {
			s, _ := testSuite.NewSender(pk, info)
			enc, sealer, err := s.Setup(nil)
			if err != nil {
				b.Fatal(err)
			}
			ct, _ := sealer.Seal(pt, nil)
			r, _ := testSuite.NewReceiver(sk, info)
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
		{"ours", overheadRun(
			must(twoway.NewRequestSender(testSuite, 1, pk, nil)).NewRequestSealer,
			must(twoway.NewRequestReceiver(testSuite, 1, sk, nil)).NewRequestOpener,
			pt, buf)},
		{"reference", overheadRun(
			must(ref.NewRequestSender(testSuite, 1, pk, nil)).NewRequestSealer,
			must(ref.NewRequestReceiver(testSuite, 1, sk, nil)).NewRequestOpener,
			pt, buf)},
	}
}

// overheadRun returns one unchunked round trip of pt through an
// implementation's sealer and opener constructors, in buf. The media types
// are made once, as in drainBody.
func overheadRun[O any, S requestSealer[O], Op requestOpener[O, RS], RS io.Reader](newSealer func(io.Reader, []byte, ...O) (S, error), newOpener func(io.Reader, []byte, ...O) (Op, error), pt, buf []byte) func(b *testing.B) {
	q, a := []byte("q"), []byte("a")
	return func(b *testing.B) {
		s, _ := newSealer(bytes.NewReader(pt), q)
		n, _ := io.ReadFull(s, buf[:len(pt)+7+32+16])
		o, err := newOpener(bytes.NewReader(buf[:n]), q)
		if err != nil {
			b.Fatal(err)
		}
		drain(b, o, buf)
		rs, _ := o.NewResponseSealer(bytes.NewReader(pt), a)
		n, _ = io.ReadFull(rs, buf[:len(pt)+16+16])
		ro, err := s.NewResponseOpener(bytes.NewReader(buf[:n]), a)
		if err != nil {
			b.Fatal(err)
		}
		drain(b, ro, buf)
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
	meds := pairedMedians(b, impls)
	us := map[string]float64{}
	for j, impl := range impls {
		us[impl.name] = float64(meds[j].Nanoseconds()) / 1e3
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
	snd, _ := twoway.NewRequestSender(testSuite, 1, pk, nil)
	ct, _ := io.ReadAll(must(snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"))))
	ours := memoryRuns(snd.NewRequestSealer, must(twoway.NewRequestReceiver(testSuite, 1, sk, nil)).NewRequestOpener, pt, ct, buf)
	reference := memoryRuns(must(ref.NewRequestSender(testSuite, 1, pk, nil)).NewRequestSealer, must(ref.NewRequestReceiver(testSuite, 1, sk, nil)).NewRequestOpener, pt, ct, buf)
	for i, op := range []string{"Seal", "Open", "OpenUnknownLength"} {
		for _, impl := range []benchImpl{{"ours", ours[i]}, {"reference", reference[i]}} {
			b.Run("op="+op+"/impl="+impl.name, func(b *testing.B) {
				b.SetBytes(benchMsgLen)
				b.ReportAllocs()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				n := 0
				for b.Loop() {
					impl.run(b)
					n++
				}
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n)/benchMsgLen, "alloc/msg")
			})
		}
	}
}

// memoryRuns returns the bodies of the unchunked memory benchmarks of one
// implementation: seal pt and open ct from sources whose length is known
// (bytes.Reader's Len), and open ct from a body of unknown length, as an
// HTTP request body without a Content-Length.
func memoryRuns[O any, S io.Reader, Op io.Reader](newSealer func(io.Reader, []byte, ...O) (S, error), newOpener func(io.Reader, []byte, ...O) (Op, error), pt, ct, buf []byte) [3]func(*testing.B) {
	return [3]func(*testing.B){
		drainBody(newSealer, wholeReads, pt, "q", nil, buf),
		drainBody(newOpener, wholeReads, ct, "q", nil, buf),
		drainBody(newOpener, bodyOf, ct, "q", nil, buf),
	}
}

// BenchmarkTinyReads seals a 1000-byte chunked message whose source returns
// one byte per Read and reports the ciphertext size ("ct-bytes").
func BenchmarkTinyReads(b *testing.B) {
	pk, _ := keyPair(b, hpke.KEM_X25519_HKDF_SHA256, "bench")
	b.Run("impl=ours", func(b *testing.B) {
		tinyReads(b, must(twoway.NewRequestSender(testSuite, 1, pk, nil)).NewRequestSealer, twoway.EnableChunking())
	})
	b.Run("impl=reference", func(b *testing.B) {
		tinyReads(b, must(ref.NewRequestSender(testSuite, 1, pk, nil)).NewRequestSealer, ref.EnableChunking())
	})
}

func tinyReads[O any, S io.Reader](b *testing.B, newSealer func(io.Reader, []byte, ...O) (S, error), opts ...O) {
	pt := pattern(1000)
	buf := make([]byte, benchCopyLen)
	q := []byte("q") // made once, as in drainBody
	n := 0
	for b.Loop() {
		s, err := newSealer(&trickle{bytes.NewReader(pt), 1}, q, opts...)
		if err != nil {
			b.Fatal(err)
		}
		n = drain(b, s, buf)
	}
	b.ReportMetric(float64(n), "ct-bytes")
}
