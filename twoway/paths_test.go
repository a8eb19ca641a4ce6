package twoway_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/cloudflare/circl/hpke"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// TestChunkPathsIdentical reads chunked messages along every path the
// sealers and openers take and checks that they agree byte for byte:
//
//   - a sealer read with buffers that hold a whole chunk (sealed in place in
//     the caller's buffer), one byte shorter (through the sealer's own
//     buffer) and smaller, from sources that return everything, one or
//     three bytes, a chunk and a byte, or hide io.ByteReader; and the AEAD
//     called directly (fast path) or through the HPKE interfaces (a custom
//     suite);
//   - an opener read with buffers that hold a chunk (opened in place) and
//     the bytes past it that it reads ahead, exactly a chunk, one byte
//     short of a chunk (through its own buffer), or less, from the same
//     sources and one that returns io.EOF with the last data: the same
//     plaintext, and for a cut or a flipped bit the same plaintext before
//     the same error.
//
// The messages are 0, 1, chunk-1, chunk, chunk+1, 2*chunk-1, 2*chunk,
// 2*chunk+1 and 3*chunk+7 bytes long, so every final chunk is empty, short
// or full, for chunk lengths with 1-, 2- and 4-byte length prefixes.
func TestChunkPathsIdentical(t *testing.T) {
	pk, sk := keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "paths")
	fast := twoway.AdaptCirclHPKESuite(testSuite)
	suites := map[string]twoway.HPKESuite{"fast": fast, "custom": opaqueSuite{fast}}
	sources := map[string]func([]byte) io.Reader{
		"whole": wholeReads,
		"body":  func(b []byte) io.Reader { return &bodyReader{bytes.NewReader(b)} },
		"by-1":  func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), 1} },
		"by-3":  func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), 3} },
	}
	q, a := []byte("q"), []byte("a")
	for _, chunk := range []int{40, 100, 16 << 10} {
		maxCT := chunk + 16
		maxChunk := quicvarint.Len(uint64(maxCT)) + maxCT // what a sealer writes in place
		opts := []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(chunk)}
		sources["by-chunk+1"] = func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), chunk + 1} }
		sealBufs := []int{1, 7, maxChunk - 1, maxChunk, maxChunk + 1, 2*maxChunk + 3, 64 << 10}
		openBufs := []int{1, 3, chunk, maxCT - 1, maxCT, maxCT + 1, maxCT + 3, maxCT + 8, maxCT + 9, 2*maxCT + 9, 64 << 10}

		for _, n := range []int{0, 1, chunk - 1, chunk, chunk + 1, 2*chunk - 1, 2 * chunk, 2*chunk + 1, 3*chunk + 7} {
			pt, resp := pattern(n), pattern(n+3)
			name := fmt.Sprintf("chunk=%d/n=%d", chunk, n)

			// seal returns the request and response sealed with the suite
			// from src, each sealer read with bufLen-byte Reads, and the
			// request sealer (which opens the response).
			seal := func(suite twoway.HPKESuite, src func([]byte) io.Reader, bufLen int) ([]byte, []byte, *twoway.RequestSealer) {
				t.Helper()
				snd, err := twoway.NewRequestSenderWithCustomSuite(suite, 1, pk, newDetRand("paths-sender"))
				if err != nil {
					t.Fatal(err)
				}
				s, err := snd.NewRequestSealer(src(pt), q, opts...)
				if err != nil {
					t.Fatal(err)
				}
				encReq, err := readAllWith(s, bufLen)
				if err != nil {
					t.Fatalf("%s: seal request: %v", name, err)
				}
				rcv, err := twoway.NewRequestReceiverWithCustomSuite(suite, 1, sk, newDetRand("paths-receiver"))
				if err != nil {
					t.Fatal(err)
				}
				o, err := rcv.NewRequestOpener(bytes.NewReader(encReq), q, opts...)
				if err != nil {
					t.Fatalf("%s: open request: %v", name, err)
				}
				if got, err := io.ReadAll(o); err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%s: the request opened to %d bytes (%v)", name, len(got), err)
				}
				rs, err := o.NewResponseSealer(src(resp), a, opts...)
				if err != nil {
					t.Fatal(err)
				}
				encResp, err := readAllWith(rs, bufLen)
				if err != nil {
					t.Fatalf("%s: seal response: %v", name, err)
				}
				return encReq, encResp, s
			}

			// Every way of sealing gives the bytes of the first.
			wantReq, wantResp, s := seal(fast, wholeReads, 64<<10)
			check := func(what string, encReq, encResp []byte) {
				t.Helper()
				if !bytes.Equal(encReq, wantReq) {
					t.Errorf("%s, %s: the request differs (%d bytes, want %d)", name, what, len(encReq), len(wantReq))
				}
				if !bytes.Equal(encResp, wantResp) {
					t.Errorf("%s, %s: the response differs (%d bytes, want %d)", name, what, len(encResp), len(wantResp))
				}
			}
			for sname, suite := range suites {
				for _, bl := range sealBufs {
					encReq, encResp, _ := seal(suite, wholeReads, bl)
					check(fmt.Sprintf("%s suite, %d-byte reads", sname, bl), encReq, encResp)
				}
				for src, mk := range sources {
					for _, bl := range []int{maxChunk - 1, maxChunk, 32 << 10} {
						encReq, encResp, _ := seal(suite, mk, bl)
						check(fmt.Sprintf("%s suite, %s source, %d-byte reads", sname, src, bl), encReq, encResp)
					}
				}
			}

			// Every way of opening gives the plaintext, and for a damaged
			// message the same plaintext before the same error.
			rcvs := map[string]*twoway.RequestReceiver{}
			sealers := map[string]*twoway.RequestSealer{"fast": s}
			for sname, suite := range suites {
				rcv, err := twoway.NewRequestReceiverWithCustomSuite(suite, 1, sk, nil)
				if err != nil {
					t.Fatal(err)
				}
				rcvs[sname] = rcv
				if sname != "fast" {
					_, _, sealers[sname] = seal(suite, wholeReads, 64<<10)
				}
			}
			openSources := map[string]func([]byte) io.Reader{"data+EOF": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }}
			for k, v := range sources {
				openSources[k] = v
			}
			open := func(suite string, encReq, encResp []byte, src func([]byte) io.Reader, bufLen int) (req, rsp []byte, reqErr, rspErr error) {
				t.Helper()
				o, err := rcvs[suite].NewRequestOpener(src(encReq), q, opts...)
				if err != nil {
					reqErr = err
				} else {
					req, reqErr = readAllWith(o, bufLen)
				}
				ro, err := sealers[suite].NewResponseOpener(src(encResp), a, opts...)
				if err != nil {
					rspErr = err
				} else {
					rsp, rspErr = readAllWith(ro, bufLen)
				}
				return req, rsp, reqErr, rspErr
			}
			for sname := range suites {
				for src, mk := range openSources {
					bufs := openBufs
					if src != "whole" && chunk > 100 {
						bufs = []int{chunk, maxCT - 1, maxCT, maxCT + 1, maxCT + 8, 32 << 10}
					}
					for _, bl := range bufs {
						req, rsp, reqErr, rspErr := open(sname, wantReq, wantResp, mk, bl)
						if reqErr != nil || rspErr != nil || !bytes.Equal(req, pt) || !bytes.Equal(rsp, resp) {
							t.Errorf("%s, %s suite, %s source, %d-byte reads: opened %d and %d bytes (%v, %v), want %d and %d", name, sname, src, bl, len(req), len(rsp), reqErr, rspErr, len(pt), len(resp))
						}
					}
				}
			}
			if chunk > 100 {
				continue // the damage below, at every byte, is for short messages
			}
			damaged := func(what string, req, resp []byte) {
				t.Helper()
				wantPT, wantRsp, wantReqErr, wantRspErr := open("fast", req, resp, wholeReads, 64<<10)
				if wantReqErr == nil || wantRspErr == nil {
					t.Fatalf("%s, %s: opened without error", name, what)
				}
				for sname := range suites {
					for _, bl := range openBufs {
						for src, mk := range map[string]func([]byte) io.Reader{"whole": wholeReads, "by-3": sources["by-3"]} {
							got, gotRsp, reqErr, rspErr := open(sname, req, resp, mk, bl)
							if !bytes.Equal(got, wantPT) || !bytes.Equal(gotRsp, wantRsp) || errClass(reqErr) != errClass(wantReqErr) || errClass(rspErr) != errClass(wantRspErr) {
								t.Fatalf("%s, %s, %s suite, %s source, %d-byte reads: %d and %d bytes before %v and %v; want %d and %d before %v and %v",
									name, what, sname, src, bl, len(got), len(gotRsp), reqErr, rspErr, len(wantPT), len(wantRsp), wantReqErr, wantRspErr)
							}
						}
					}
				}
			}
			for cut := 39; cut < len(wantReq); cut++ {
				r := cut - 39 + 16 // the same offset into the response's chunks
				if r >= len(wantResp) {
					r = len(wantResp) - 1
				}
				damaged(fmt.Sprintf("cut to %d and %d bytes", cut, r), wantReq[:cut], wantResp[:r])
			}
			for i := 39; i < len(wantReq); i += 5 {
				req, rsp := bytes.Clone(wantReq), bytes.Clone(wantResp)
				req[i] ^= 0x20
				rsp[min(i-39+16, len(rsp)-1)] ^= 0x20
				damaged(fmt.Sprintf("bit 5 of byte %d flipped", i), req, rsp)
			}
		}
	}
}

// errClass names the first of the package's errors err wraps, or its text.
func errClass(err error) string {
	if err == nil {
		return "nil"
	}
	for _, e := range typedErrors {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return err.Error()
}
