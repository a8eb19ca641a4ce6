package twoway_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"
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
//
// The paths are also held to expectations of their own: the custom suite
// is called for every sender and receiver (the package does not replace
// it by its own key schedule), the sealed message has the layout its
// length gives (full chunks, then the final one), and a damaged message
// yields the plaintext of exactly the chunks before the damage, then, for
// a cut, ErrTruncated while the final chunk is shorter than a tag and
// ErrAuthentication from there on.
func TestChunkPathsIdentical(t *testing.T) {
	pk, sk := keyPair(t, hpke.KEM_X25519_HKDF_SHA256, "paths")
	fast := twoway.AdaptCirclHPKESuite(testSuite)
	var customSetups atomic.Int64
	suites := map[string]twoway.HPKESuite{"fast": fast, "custom": countingSuite{fast, &customSetups}}
	defer func() {
		if customSetups.Load() == 0 {
			t.Error("the custom suite was never called: the package replaced it by its own key schedule")
		}
	}()
	sources := map[string]func([]byte) io.Reader{
		"whole": wholeReads,
		"body":  bodyOf,
		"by-1":  func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), 1} },
		"by-3":  func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), 3} },
	}
	q, a := []byte("app/req"), []byte("app/resp") // roundTripWith's
	const reqHdr, respHdr = 7 + 32, 16            // what precedes the first chunk
	for _, chunk := range []int{40, 100, 16 << 10} {
		maxCT := chunk + 16
		maxChunk := quicvarint.Len(uint64(maxCT)) + maxCT // a full chunk with its length prefix
		opts := []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(chunk)}
		sources["by-chunk+1"] = func(b []byte) io.Reader { return &trickle{bytes.NewReader(b), chunk + 1} }
		sealBufs := []int{1, 7, maxChunk - 1, maxChunk, maxChunk + 1, 2*maxChunk + 3, 64 << 10}
		openBufs := []int{1, 3, chunk, maxCT - 1, maxCT, maxCT + 1, maxCT + 3, maxCT + 8, maxCT + 9, 2*maxCT + 9, 64 << 10}
		// sealedLen is the length of a message of m bytes of plaintext
		// behind hdr bytes: full chunks, then the final one (its zero
		// length, the rest of the plaintext and the tag).
		sealedLen := func(hdr, m int) int { return hdr + m/chunk*maxChunk + 1 + m%chunk + 16 }
		// openedBefore is how much of a message of m bytes of plaintext
		// behind hdr bytes opens when it is cut to d bytes or damaged at
		// byte d: the chunks that end by d, never the final one.
		openedBefore := func(hdr, m, d int) int { return min(m/chunk, max(d-hdr, 0)/maxChunk) * chunk }

		for _, n := range []int{0, 1, chunk - 1, chunk, chunk + 1, 2*chunk - 1, 2 * chunk, 2*chunk + 1, 3*chunk + 7} {
			t.Run(fmt.Sprintf("chunk=%d/n=%d", chunk, n), func(t *testing.T) {
				pt, resp := pattern(n), pattern(n+3) // roundTripWith's response

				// seal returns the request and response sealed with the
				// suite from src, each sealer read with bufLen-byte Reads,
				// and the request sealer (which opens the response).
				seal := func(suite twoway.HPKESuite, src func([]byte) io.Reader, bufLen int) ([]byte, []byte, *twoway.RequestSealer) {
					t.Helper()
					snd := must(twoway.NewRequestSenderWithCustomSuite(suite, 1, pk, newDetRand("paths-sender")))
					rcv := must(twoway.NewRequestReceiverWithCustomSuite(suite, 1, sk, newDetRand("paths-receiver")))
					return roundTripWith(t, snd, rcv, pt, src, bufLen, opts...)
				}

				// Every way of sealing gives the bytes of the first, laid
				// out as the message's length says.
				wantReq, wantResp, s := seal(fast, wholeReads, 64<<10)
				if len(wantReq) != sealedLen(reqHdr, n) || len(wantResp) != sealedLen(respHdr, n+3) {
					t.Fatalf("sealed to %d and %d bytes, want %d and %d", len(wantReq), len(wantResp), sealedLen(reqHdr, n), sealedLen(respHdr, n+3))
				}
				check := func(what string, encReq, encResp []byte) {
					t.Helper()
					if !bytes.Equal(encReq, wantReq) {
						t.Errorf("%s: the request differs (%d bytes, want %d)", what, len(encReq), len(wantReq))
					}
					if !bytes.Equal(encResp, wantResp) {
						t.Errorf("%s: the response differs (%d bytes, want %d)", what, len(encResp), len(wantResp))
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

				// Every way of opening gives the plaintext, and for a
				// damaged message the plaintext before the damage, then
				// the same error.
				rcvs := map[string]*twoway.RequestReceiver{}
				sealers := map[string]*twoway.RequestSealer{"fast": s}
				for sname, suite := range suites {
					rcvs[sname] = must(twoway.NewRequestReceiverWithCustomSuite(suite, 1, sk, nil))
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
								t.Errorf("%s suite, %s source, %d-byte reads: opened %d and %d bytes (%v, %v), want %d and %d", sname, src, bl, len(req), len(rsp), reqErr, rspErr, len(pt), len(resp))
							}
						}
					}
				}
				if chunk > 100 {
					return // the damage below, at every byte, is for short messages
				}
				// damaged opens encReq and encResp, damaged at byte d and
				// dr (cut there when cut), along every path: each yields
				// the plaintext of the chunks before the damage and then
				// the error of the first path, which for a cut is
				// ErrTruncated while the final chunk is shorter than a
				// tag and ErrAuthentication from there on.
				damaged := func(what string, encReq, encResp []byte, d, dr int, cut bool) {
					t.Helper()
					wantPT, wantRsp := pt[:openedBefore(reqHdr, n, d)], resp[:openedBefore(respHdr, n+3, dr)]
					_, _, wantReqErr, wantRspErr := open("fast", encReq, encResp, wholeReads, 64<<10)
					if !typed(wantReqErr) || !typed(wantRspErr) {
						t.Fatalf("%s: %v and %v, want one of the package's errors for each", what, wantReqErr, wantRspErr)
					}
					if cut {
						for _, c := range []struct {
							err    error
							hdr, m int
							d      int
						}{{wantReqErr, reqHdr, n, d}, {wantRspErr, respHdr, n + 3, dr}} {
							want := twoway.ErrTruncated
							if tag := c.hdr + c.m/chunk*maxChunk + 1 + 16; c.d >= tag {
								want = twoway.ErrAuthentication
							}
							if !errors.Is(c.err, want) {
								t.Fatalf("%s: %v, want %v", what, c.err, want)
							}
						}
					}
					for sname := range suites {
						for _, bl := range openBufs {
							for src, mk := range map[string]func([]byte) io.Reader{"whole": wholeReads, "by-3": sources["by-3"]} {
								got, gotRsp, reqErr, rspErr := open(sname, encReq, encResp, mk, bl)
								if !bytes.Equal(got, wantPT) || !bytes.Equal(gotRsp, wantRsp) || errClass(reqErr) != errClass(wantReqErr) || errClass(rspErr) != errClass(wantRspErr) {
									t.Fatalf("%s, %s suite, %s source, %d-byte reads: %d and %d bytes before %v and %v; want %d and %d before %v and %v",
										what, sname, src, bl, len(got), len(gotRsp), reqErr, rspErr, len(wantPT), len(wantRsp), wantReqErr, wantRspErr)
								}
							}
						}
					}
				}
				for cut := reqHdr; cut < len(wantReq); cut++ {
					r := min(cut-reqHdr+respHdr, len(wantResp)-1) // the same offset into the response's chunks
					damaged(fmt.Sprintf("cut to %d and %d bytes", cut, r), wantReq[:cut], wantResp[:r], cut, r, true)
				}
				for i := reqHdr; i < len(wantReq); i += 5 {
					r := min(i-reqHdr+respHdr, len(wantResp)-1)
					req, rsp := bytes.Clone(wantReq), bytes.Clone(wantResp)
					req[i] ^= 0x20
					rsp[r] ^= 0x20
					damaged(fmt.Sprintf("bit 5 of byte %d and %d flipped", i, r), req, rsp, i, r, false)
				}
			})
		}
	}
}

// countingSuite hides a suite's type, as opaqueSuite does, and counts the
// senders and receivers the package sets up through it.
type countingSuite struct {
	twoway.HPKESuite
	setups *atomic.Int64
}

func (c countingSuite) NewSender(pk circlkem.PublicKey, info []byte) (twoway.HPKESender, error) {
	c.setups.Add(1)
	return c.HPKESuite.NewSender(pk, info)
}

func (c countingSuite) NewReceiver(sk circlkem.PrivateKey, info []byte) (twoway.HPKEReceiver, error) {
	c.setups.Add(1)
	return c.HPKESuite.NewReceiver(sk, info)
}

// typed reports whether err is one of the package's errors (typedErrors).
func typed(err error) bool {
	return err != nil && slices.ContainsFunc(typedErrors, func(e error) bool { return errors.Is(err, e) })
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
