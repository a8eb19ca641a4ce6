package twoway_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The fuzz targets check that arbitrary input never panics, never yields
// plaintext that was not sealed, and that whatever parses re-encodes to the
// same bytes. Their seed corpora live in testdata/fuzz.

func FuzzParseRequestHeader(f *testing.F) {
	f.Add([]byte{1, 0, 0x20, 0, 1, 0, 1})
	f.Add([]byte{255, 0, 0x11, 0, 2, 0, 2, 9})
	f.Add([]byte{1, 0x64, 0x7a, 0, 3, 0, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := twoway.ParseRequestHeaderFrom(b)
		if err != nil {
			return
		}
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b[:twoway.BinaryRequestHeaderLen]) {
			t.Fatalf("header %x re-encoded as %x", b[:7], out)
		}
		_ = h.String()
	})
}

func FuzzParseKeyConfigs(f *testing.F) {
	one := unhex(f, rfc9458Example.keyConfig)
	f.Add(one)
	f.Add(append([]byte{0, byte(len(one))}, one...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var kc twoway.KeyConfig
		if kc.UnmarshalBinary(b) == nil {
			out, err := kc.MarshalBinary()
			if err != nil || !bytes.Equal(out, b) {
				t.Fatalf("config %x re-encoded as %x (%v)", b, out, err)
			}
		}
		list, err := twoway.ParseKeyConfigs(b)
		if err != nil {
			return
		}
		out, err := twoway.MarshalKeyConfigs(list)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("list %x re-encoded as %x (%v)", b, out, err)
		}
	})
}

// fuzzWorld is a fixed key pair, request and response, sealed with
// deterministic randomness so that the same messages come out on every run.
// Chunked and unchunked messages have different media types and different
// randomness, as real ones do: a fuzzer that splices the first chunk of a
// chunked message into an unchunked one must not find them sharing keys.
type fuzzWorld struct {
	pk              circlkem.PublicKey
	sk              circlkem.PrivateKey
	request, answer []byte
	// one-to-one, unchunked and chunked
	encReq  [2][]byte
	encResp [2][]byte
	// one-to-many
	multiBody [2][]byte
	multiKey  [2][]byte
}

var (
	worldOnce sync.Once
	world     *fuzzWorld
)

func fuzzOpts(chunked bool) []twoway.Option {
	if chunked {
		return []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(16)}
	}
	return []twoway.Option{twoway.WithMaxMessageLen(4096)}
}

// reqType and respType are the media types of the fuzz world's messages:
// different for chunked and unchunked ones, as they must be (see
// EnableChunking: otherwise a chunked message's first chunk opens as a
// shorter unchunked message).
func reqType(chunked bool) []byte {
	if chunked {
		return []byte("req-chunked")
	}
	return []byte("req")
}

func respType(chunked bool) []byte {
	if chunked {
		return []byte("resp-chunked")
	}
	return []byte("resp")
}

func idx(chunked bool) int {
	if chunked {
		return 1
	}
	return 0
}

// getWorld builds the fuzz world once. It holds no sealers: a response
// opener belongs to one message, so requestSealer rebuilds one per use.
func getWorld(tb testing.TB) *fuzzWorld {
	worldOnce.Do(func() {
		world = buildWorld()
	})
	if world == nil {
		tb.Fatal("the fuzz world could not be built (see the panic above)")
	}
	return world
}

// buildWorld seals the world's messages and checks that each opens
// untouched, so that a broken setup fails the fuzz targets instead of
// leaving them to accept every input as an error.
func buildWorld() *fuzzWorld {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	w := &fuzzWorld{request: pattern(40), answer: pattern(37)}
	scheme := hpke.KEM_X25519_HKDF_SHA256.Scheme()
	ikm := make([]byte, scheme.SeedSize())
	newDetRand("fuzz").Read(ikm)
	w.pk, w.sk = scheme.DeriveKeyPair(ikm)
	for _, chunked := range []bool{false, true} {
		i := idx(chunked)
		opts := fuzzOpts(chunked)
		snd, err := twoway.NewRequestSender(testSuite, 5, w.pk, newDetRand("fuzz-sender"+string(reqType(chunked))))
		must(err)
		s, err := snd.NewRequestSealer(bytes.NewReader(w.request), reqType(chunked), opts...)
		must(err)
		w.encReq[i], err = io.ReadAll(s)
		must(err)
		rcv, err := twoway.NewRequestReceiver(testSuite, 5, w.sk, newDetRand("fuzz-receiver"))
		must(err)
		o, err := rcv.NewRequestOpener(bytes.NewReader(w.encReq[i]), reqType(chunked), opts...)
		must(err)
		if got, err := io.ReadAll(o); err != nil || !bytes.Equal(got, w.request) {
			panic(fmt.Sprintf("fuzz world: the request does not open (chunked %v): %v", chunked, err))
		}
		rs, err := o.NewResponseSealer(bytes.NewReader(w.answer), respType(chunked), opts...)
		must(err)
		w.encResp[i], err = io.ReadAll(rs)
		must(err)
		ro, err := s.NewResponseOpener(bytes.NewReader(w.encResp[i]), respType(chunked), opts...)
		must(err)
		if got, err := io.ReadAll(ro); err != nil || !bytes.Equal(got, w.answer) {
			panic(fmt.Sprintf("fuzz world: the response does not open (chunked %v): %v", chunked, err))
		}
		ms, err := twoway.NewMultiRequestSender(testSuite, newDetRand("fuzz-multi"+string(reqType(chunked)))).NewRequestSealer(bytes.NewReader(w.request), reqType(chunked), opts...)
		must(err)
		w.multiBody[i], err = io.ReadAll(ms)
		must(err)
		w.multiKey[i], _, err = ms.EncapsulateKey(5, w.pk)
		must(err)
		mrcv, err := twoway.NewMultiRequestReceiver(testSuite, 5, w.sk, nil)
		must(err)
		mo, err := mrcv.NewRequestOpener(w.multiKey[i], bytes.NewReader(w.multiBody[i]), reqType(chunked), opts...)
		must(err)
		if got, err := io.ReadAll(mo); err != nil || !bytes.Equal(got, w.request) {
			panic(fmt.Sprintf("fuzz world: the one-to-many request does not open (chunked %v): %v", chunked, err))
		}
	}
	return w
}

// requestSealer returns a fresh sealer of the world's request; with the
// deterministic sender it has the same HPKE context every time.
func (w *fuzzWorld) requestSealer(t *testing.T, chunked bool) *twoway.RequestSealer {
	snd, err := twoway.NewRequestSender(testSuite, 5, w.pk, newDetRand("fuzz-sender"+string(reqType(chunked))))
	if err != nil {
		t.Fatal(err)
	}
	s, err := snd.NewRequestSealer(bytes.NewReader(w.request), reqType(chunked), fuzzOpts(chunked)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkOpened fails when an opener returned bytes that are not a prefix of
// what was sealed, or reported success on anything but the whole message.
func checkOpened(t *testing.T, sealed, got []byte, err error) {
	t.Helper()
	if !bytes.HasPrefix(sealed, got) {
		t.Fatalf("opener returned %x, which was never sealed", got)
	}
	if err == nil && !bytes.Equal(got, sealed) {
		t.Fatalf("opener returned a partial message (%d of %d bytes) without error", len(got), len(sealed))
	}
	if err != nil && errors.Is(err, io.EOF) {
		t.Fatalf("error matches io.EOF: %v", err)
	}
}

func FuzzRequestOpener(f *testing.F) {
	w := getWorld(f)
	for _, chunked := range []bool{false, true} {
		f.Add(w.encReq[idx(chunked)], chunked)
		f.Add(w.encReq[idx(chunked)][:50], chunked)
	}
	f.Fuzz(func(t *testing.T, ct []byte, chunked bool) {
		rcv, _ := twoway.NewRequestReceiver(testSuite, 5, w.sk, newDetRand("r"))
		o, err := rcv.NewRequestOpener(bytes.NewReader(ct), reqType(chunked), fuzzOpts(chunked)...)
		if err != nil {
			checkOpened(t, w.request, nil, err)
			return
		}
		got, err := readAllWith(o, 7)
		checkOpened(t, w.request, got, err)
	})
}

func FuzzResponseOpener(f *testing.F) {
	w := getWorld(f)
	for _, chunked := range []bool{false, true} {
		f.Add(w.encResp[idx(chunked)], chunked)
		f.Add(w.encResp[idx(chunked)][:20], chunked)
	}
	f.Fuzz(func(t *testing.T, ct []byte, chunked bool) {
		s := w.requestSealer(t, chunked)
		r, err := s.NewResponseOpener(bytes.NewReader(ct), respType(chunked), fuzzOpts(chunked)...)
		if err != nil {
			checkOpened(t, w.answer, nil, err)
			return
		}
		got, err := readAllWith(r, 5)
		checkOpened(t, w.answer, got, err)
	})
}

func FuzzMultiRequestOpener(f *testing.F) {
	w := getWorld(f)
	for _, chunked := range []bool{false, true} {
		f.Add(w.multiKey[idx(chunked)], w.multiBody[idx(chunked)], chunked)
	}
	f.Fuzz(func(t *testing.T, ek, body []byte, chunked bool) {
		rcv, _ := twoway.NewMultiRequestReceiver(testSuite, 5, w.sk, newDetRand("m"))
		o, err := rcv.NewRequestOpener(ek, bytes.NewReader(body), reqType(chunked), fuzzOpts(chunked)...)
		if err != nil {
			checkOpened(t, w.request, nil, err)
			return
		}
		got, err := readAllWith(o, 11)
		checkOpened(t, w.request, got, err)
	})
}
