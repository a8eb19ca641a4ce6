package twoway_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	ref "github.com/openpcc/twoway"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// These tests run this package against github.com/openpcc/twoway v0.0.37,
// the reference whose API and wire formats it keeps, in both directions.

type side struct {
	name string
	// one-to-one
	seal  func(pk kem.PublicKey, pt []byte, chunked bool) (ct []byte, openResp func(ct []byte) ([]byte, error), err error)
	open  func(sk kem.PrivateKey, ct []byte, chunked bool) (pt []byte, sealResp func(pt []byte) ([]byte, error), err error)
	mseal func(pk kem.PublicKey, pt []byte, chunked bool) (ct, ek []byte, openResp func(ct []byte) ([]byte, error), err error)
	mopen func(sk kem.PrivateKey, ek, ct []byte, chunked bool) (pt []byte, sealResp func(pt []byte) ([]byte, error), err error)
}

func chunkOpt(chunked bool) []twoway.Option {
	if chunked {
		return []twoway.Option{twoway.EnableChunking()}
	}
	return nil
}

func refChunkOpt(chunked bool) []ref.Option {
	if chunked {
		return []ref.Option{ref.EnableChunking()}
	}
	return nil
}

var interopSuite = hpke.NewSuite(hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)

var ours = side{
	name: "ours",
	seal: func(pk kem.PublicKey, pt []byte, chunked bool) ([]byte, func([]byte) ([]byte, error), error) {
		snd, err := twoway.NewRequestSender(interopSuite, 9, pk, nil)
		if err != nil {
			return nil, nil, err
		}
		s, err := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), chunkOpt(chunked)...)
		if err != nil {
			return nil, nil, err
		}
		ct, err := io.ReadAll(s)
		return ct, func(rct []byte) ([]byte, error) {
			r, err := s.NewResponseOpener(bytes.NewReader(rct), []byte("a"), chunkOpt(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		}, err
	},
	open: func(sk kem.PrivateKey, ct []byte, chunked bool) ([]byte, func([]byte) ([]byte, error), error) {
		rcv, err := twoway.NewRequestReceiver(interopSuite, 9, sk, nil)
		if err != nil {
			return nil, nil, err
		}
		o, err := rcv.NewRequestOpener(bytes.NewReader(ct), []byte("q"), chunkOpt(chunked)...)
		if err != nil {
			return nil, nil, err
		}
		pt, err := io.ReadAll(o)
		return pt, func(resp []byte) ([]byte, error) {
			rs, err := o.NewResponseSealer(bytes.NewReader(resp), []byte("a"), chunkOpt(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(rs)
		}, err
	},
	mseal: func(pk kem.PublicKey, pt []byte, chunked bool) ([]byte, []byte, func([]byte) ([]byte, error), error) {
		s, err := twoway.NewMultiRequestSender(interopSuite, nil).NewRequestSealer(bytes.NewReader(pt), []byte("q"), chunkOpt(chunked)...)
		if err != nil {
			return nil, nil, nil, err
		}
		ct, err := io.ReadAll(s)
		if err != nil {
			return nil, nil, nil, err
		}
		ek, openResp, err := s.EncapsulateKey(9, pk)
		return ct, ek, func(rct []byte) ([]byte, error) {
			r, err := openResp(bytes.NewReader(rct), []byte("a"), chunkOpt(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		}, err
	},
	mopen: func(sk kem.PrivateKey, ek, ct []byte, chunked bool) ([]byte, func([]byte) ([]byte, error), error) {
		rcv, err := twoway.NewMultiRequestReceiver(interopSuite, 9, sk, nil)
		if err != nil {
			return nil, nil, err
		}
		o, err := rcv.NewRequestOpener(ek, bytes.NewReader(ct), []byte("q"), chunkOpt(chunked)...)
		if err != nil {
			return nil, nil, err
		}
		pt, err := io.ReadAll(o)
		return pt, func(resp []byte) ([]byte, error) {
			rs, err := o.NewResponseSealer(bytes.NewReader(resp), []byte("a"), chunkOpt(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(rs)
		}, err
	},
}

var reference = side{
	name: "reference",
	seal: func(pk kem.PublicKey, pt []byte, chunked bool) ([]byte, func([]byte) ([]byte, error), error) {
		snd, err := ref.NewRequestSender(interopSuite, 9, pk, nil)
		if err != nil {
			return nil, nil, err
		}
		s, err := snd.NewRequestSealer(bytes.NewReader(pt), []byte("q"), refChunkOpt(chunked)...)
		if err != nil {
			return nil, nil, err
		}
		ct, err := io.ReadAll(s)
		return ct, func(rct []byte) ([]byte, error) {
			r, err := s.NewResponseOpener(bytes.NewReader(rct), []byte("a"), refChunkOpt(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		}, err
	},
	open: func(sk kem.PrivateKey, ct []byte, chunked bool) ([]byte, func([]byte) ([]byte, error), error) {
		rcv, err := ref.NewRequestReceiver(interopSuite, 9, sk, nil)
		if err != nil {
			return nil, nil, err
		}
		o, err := rcv.NewRequestOpener(bytes.NewReader(ct), []byte("q"), refChunkOpt(chunked)...)
		if err != nil {
			return nil, nil, err
		}
		pt, err := io.ReadAll(o)
		return pt, func(resp []byte) ([]byte, error) {
			rs, err := o.NewResponseSealer(bytes.NewReader(resp), []byte("a"), refChunkOpt(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(rs)
		}, err
	},
	mseal: func(pk kem.PublicKey, pt []byte, chunked bool) ([]byte, []byte, func([]byte) ([]byte, error), error) {
		s, err := ref.NewMultiRequestSender(interopSuite, newDetRand("ref")).NewRequestSealer(bytes.NewReader(pt), []byte("q"), refChunkOpt(chunked)...)
		if err != nil {
			return nil, nil, nil, err
		}
		ct, err := io.ReadAll(s)
		if err != nil {
			return nil, nil, nil, err
		}
		ek, openResp, err := s.EncapsulateKey(9, pk)
		return ct, ek, func(rct []byte) ([]byte, error) {
			r, err := openResp(bytes.NewReader(rct), []byte("a"), refChunkOpt(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		}, err
	},
	mopen: func(sk kem.PrivateKey, ek, ct []byte, chunked bool) ([]byte, func([]byte) ([]byte, error), error) {
		rcv, err := ref.NewMultiRequestReceiver(interopSuite, 9, sk, newDetRand("ref-rcv"))
		if err != nil {
			return nil, nil, err
		}
		o, err := rcv.NewRequestOpener(ek, bytes.NewReader(ct), []byte("q"), refChunkOpt(chunked)...)
		if err != nil {
			return nil, nil, err
		}
		pt, err := io.ReadAll(o)
		return pt, func(resp []byte) ([]byte, error) {
			rs, err := o.NewResponseSealer(bytes.NewReader(resp), []byte("a"), refChunkOpt(chunked)...)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(rs)
		}, err
	},
}

func TestInteropWithReference(t *testing.T) {
	pk, sk := keyPair(t, hpke.KEM_P256_HKDF_SHA256, "interop")
	pairs := [][2]side{{ours, reference}, {reference, ours}, {ours, ours}, {reference, reference}}
	for _, p := range pairs {
		for _, chunked := range []bool{false, true} {
			for _, n := range []int{0, 1, 4095, 4096, 4097, 40000} {
				sender, receiver := p[0], p[1]
				t.Run(fmt.Sprintf("%s-to-%s/chunked=%v/n=%d", sender.name, receiver.name, chunked, n), func(t *testing.T) {
					pt, resp := pattern(n), pattern(n+5)
					ct, openResp, err := sender.seal(pk, pt, chunked)
					if err != nil {
						t.Fatal(err)
					}
					got, sealResp, err := receiver.open(sk, ct, chunked)
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

					mct, ek, mopenResp, err := sender.mseal(pk, pt, chunked)
					if err != nil {
						t.Fatal(err)
					}
					got, msealResp, err := receiver.mopen(sk, ek, mct, chunked)
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
