package twoway_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"
	ref "github.com/openpcc/twoway"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// These tests run this package against github.com/openpcc/twoway v0.0.37,
// the reference whose API and wire formats it keeps, in both directions.

var interopSuite = hpke.NewSuite(hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)

// side is one implementation as the interop test drives it. Each function
// performs one step of an exchange and returns, with its output, the step
// that answers it.
type side struct {
	name  string
	seal  func(pt []byte, chunked bool) (ct []byte, openResp respond, err error)
	open  func(ct []byte, chunked bool) (pt []byte, sealResp respond, err error)
	mseal func(pt []byte, chunked bool) (ct, ek []byte, openResp respond, err error)
	mopen func(ek, ct []byte, chunked bool) (pt []byte, sealResp respond, err error)
}

// respond seals or opens a response and returns the result.
type respond func(in []byte) ([]byte, error)

// newSide returns the side of one implementation, given its EnableChunking
// and the sealer and opener constructors of its senders and receivers; the
// one-to-many sealer encapsulates to keyID and pk.
func newSide[O any, S requestSealer[O], Op requestOpener[O, RS], RS io.Reader, MS multiRequestSealer[O, F], F ~func(io.Reader, []byte, ...O) (io.Reader, error)](
	name string, enableChunking func() O, keyID byte, pk circlkem.PublicKey,
	newSealer func(io.Reader, []byte, ...O) (S, error),
	newOpener func(io.Reader, []byte, ...O) (Op, error),
	newMultiSealer func(io.Reader, []byte, ...O) (MS, error),
	newMultiOpener func([]byte, io.Reader, []byte, ...O) (Op, error),
) side {
	options := func(chunked bool) []O {
		if chunked {
			return []O{enableChunking()}
		}
		return nil
	}
	// through returns the step that passes its input through newReader, a
	// response sealer or opener constructor, and reads the result.
	through := func(newReader func(io.Reader, []byte, ...O) (io.Reader, error), chunked bool) respond {
		return func(in []byte) ([]byte, error) {
			r, err := newReader(bytes.NewReader(in), []byte("a"), options(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		}
	}
	openWith := func(newOpener func(io.Reader, []byte, ...O) (Op, error), ct []byte, chunked bool) ([]byte, respond, error) {
		o, err := newOpener(bytes.NewReader(ct), []byte("q"), options(chunked)...)
		if err != nil {
			return nil, nil, err
		}
		pt, err := io.ReadAll(o)
		return pt, through(func(pt io.Reader, mediaType []byte, opts ...O) (io.Reader, error) {
			return o.NewResponseSealer(pt, mediaType, opts...)
		}, chunked), err
	}
	return side{
		name: name,
		seal: func(pt []byte, chunked bool) ([]byte, respond, error) {
			s, err := newSealer(bytes.NewReader(pt), []byte("q"), options(chunked)...)
			if err != nil {
				return nil, nil, err
			}
			ct, err := io.ReadAll(s)
			return ct, through(s.NewResponseOpener, chunked), err
		},
		open: func(ct []byte, chunked bool) ([]byte, respond, error) {
			return openWith(newOpener, ct, chunked)
		},
		mseal: func(pt []byte, chunked bool) ([]byte, []byte, respond, error) {
			s, err := newMultiSealer(bytes.NewReader(pt), []byte("q"), options(chunked)...)
			if err != nil {
				return nil, nil, nil, err
			}
			ct, err := io.ReadAll(s)
			if err != nil {
				return nil, nil, nil, err
			}
			ek, openResp, err := s.EncapsulateKey(keyID, pk)
			return ct, ek, through(openResp, chunked), err
		},
		mopen: func(ek, ct []byte, chunked bool) ([]byte, respond, error) {
			return openWith(func(ct io.Reader, mediaType []byte, opts ...O) (Op, error) {
				return newMultiOpener(ek, ct, mediaType, opts...)
			}, ct, chunked)
		},
	}
}

func TestInteropWithReference(t *testing.T) {
	pk, sk := keyPair(t, hpke.KEM_P256_HKDF_SHA256, "interop")
	const keyID = 9
	ours := newSide("ours", twoway.EnableChunking, keyID, pk,
		must(twoway.NewRequestSender(interopSuite, keyID, pk, nil)).NewRequestSealer,
		must(twoway.NewRequestReceiver(interopSuite, keyID, sk, nil)).NewRequestOpener,
		twoway.NewMultiRequestSender(interopSuite, nil).NewRequestSealer,
		must(twoway.NewMultiRequestReceiver(interopSuite, keyID, sk, nil)).NewRequestOpener)
	// The reference's one-to-many sender and receiver need a random source.
	reference := newSide("reference", ref.EnableChunking, keyID, pk,
		must(ref.NewRequestSender(interopSuite, keyID, pk, nil)).NewRequestSealer,
		must(ref.NewRequestReceiver(interopSuite, keyID, sk, nil)).NewRequestOpener,
		ref.NewMultiRequestSender(interopSuite, newDetRand("ref")).NewRequestSealer,
		must(ref.NewMultiRequestReceiver(interopSuite, keyID, sk, newDetRand("ref-rcv"))).NewRequestOpener)
	pairs := [][2]side{{ours, reference}, {reference, ours}, {ours, ours}, {reference, reference}}
	for _, p := range pairs {
		for _, chunked := range []bool{false, true} {
			for _, n := range []int{0, 1, 4095, 4096, 4097, 40000} {
				sender, receiver := p[0], p[1]
				t.Run(fmt.Sprintf("%s-to-%s/chunked=%v/n=%d", sender.name, receiver.name, chunked, n), func(t *testing.T) {
					pt, resp := pattern(n), pattern(n+5)
					ct, openResp, err := sender.seal(pt, chunked)
					if err != nil {
						t.Fatal(err)
					}
					got, sealResp, err := receiver.open(ct, chunked)
					if err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("request: %v", err)
					}
					rct, err := sealResp(resp)
					if err != nil {
						t.Fatal(err)
					}
					if got, err = openResp(rct); err != nil || !bytes.Equal(got, resp) {
						t.Fatalf("response: %v", err)
					}

					mct, ek, mopenResp, err := sender.mseal(pt, chunked)
					if err != nil {
						t.Fatal(err)
					}
					got, msealResp, err := receiver.mopen(ek, mct, chunked)
					if err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("multi request: %v", err)
					}
					rct, err = msealResp(resp)
					if err != nil {
						t.Fatal(err)
					}
					if got, err = mopenResp(rct); err != nil || !bytes.Equal(got, resp) {
						t.Fatalf("multi response: %v", err)
					}
				})
			}
		}
	}
}
