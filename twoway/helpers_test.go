package twoway_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// testSuite is the suite of the tests that need only one.
var testSuite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)

var (
	allKEMs = []hpke.KEM{
		hpke.KEM_P256_HKDF_SHA256, hpke.KEM_P384_HKDF_SHA384, hpke.KEM_P521_HKDF_SHA512,
		hpke.KEM_X25519_HKDF_SHA256, hpke.KEM_X448_HKDF_SHA512, hpke.KEM_XWING,
	}
	allKDFs  = []hpke.KDF{hpke.KDF_HKDF_SHA256, hpke.KDF_HKDF_SHA384, hpke.KDF_HKDF_SHA512}
	allAEADs = []hpke.AEAD{hpke.AEAD_AES128GCM, hpke.AEAD_AES256GCM, hpke.AEAD_ChaCha20Poly1305}
)

// detRand is a deterministic random source for tests: SHA-256 in counter
// mode over a seed.
type detRand struct {
	seed string
	ctr  uint64
	buf  []byte
}

func newDetRand(seed string) *detRand { return &detRand{seed: seed} }

func (r *detRand) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", r.seed, r.ctr))
			r.ctr++
			r.buf = h[:]
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	return n, nil
}

// keyPair derives a deterministic key pair for a KEM.
func keyPair(t testing.TB, k hpke.KEM, seed string) (circlkem.PublicKey, circlkem.PrivateKey) {
	t.Helper()
	s := k.Scheme()
	ikm := make([]byte, s.SeedSize())
	newDetRand(seed).Read(ikm)
	pk, sk := s.DeriveKeyPair(ikm)
	return pk, sk
}

// pattern returns n bytes of recognisable plaintext.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8 + 1)
	}
	return b
}

// readAllWith reads r to the end with Read calls of size bufLen.
func readAllWith(r io.Reader, bufLen int) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, bufLen)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

// trickle is a source that returns at most max bytes per Read.
type trickle struct {
	r   io.Reader
	max int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(p) > t.max {
		p = p[:t.max]
	}
	return t.r.Read(p)
}

// roundTrip seals pt as a one-to-one request and a response with a new
// sender and receiver for suite, opens both, and returns the encapsulated
// request and response; see roundTripWith.
func roundTrip(t testing.TB, suite hpke.Suite, pk circlkem.PublicKey, sk circlkem.PrivateKey, pt []byte, src func([]byte) io.Reader, bufLen int, opts ...twoway.Option) (encReq, encResp []byte) {
	t.Helper()
	snd, err := twoway.NewRequestSender(suite, 7, pk, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := twoway.NewRequestReceiver(suite, 7, sk, nil)
	if err != nil {
		t.Fatal(err)
	}
	encReq, encResp, _ = roundTripWith(t, snd, rcv, pt, src, bufLen, opts...)
	return encReq, encResp
}

// roundTripWith seals pt read from src(pt) as a request with snd, opens it
// with rcv, answers with a response of len(pt)+3 bytes (pattern) read from
// src too and opens that, reading every sealer and opener with Read calls
// of bufLen bytes. It returns the encapsulated request and response, and
// the request's sealer, which opens the response.
func roundTripWith(t testing.TB, snd *twoway.RequestSender, rcv *twoway.RequestReceiver, pt []byte, src func([]byte) io.Reader, bufLen int, opts ...twoway.Option) (encReq, encResp []byte, sealer *twoway.RequestSealer) {
	t.Helper()
	sealer, err := snd.NewRequestSealer(src(pt), []byte("app/req"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	encReq, err = readAllWith(sealer, bufLen)
	if err != nil {
		t.Fatal(err)
	}
	opener, err := rcv.NewRequestOpener(bytes.NewReader(encReq), []byte("app/req"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAllWith(opener, bufLen)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pt) {
		t.Fatalf("request: got %d bytes, want %d", len(got), len(pt))
	}
	resp := pattern(len(pt) + 3)
	rs, err := opener.NewResponseSealer(src(resp), []byte("app/resp"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	encResp, err = readAllWith(rs, bufLen)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := sealer.NewResponseOpener(bytes.NewReader(encResp), []byte("app/resp"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	gotResp, err := readAllWith(ro, bufLen)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotResp, resp) {
		t.Fatalf("response: got %d bytes, want %d", len(gotResp), len(resp))
	}
	return encReq, encResp, sealer
}

// wholeReads is the source of roundTripWith that returns its data in one
// Read.
func wholeReads(b []byte) io.Reader { return bytes.NewReader(b) }

// multiReceiver is one receiver of a one-to-many request.
type multiReceiver struct {
	keyID byte
	pk    circlkem.PublicKey
	rcv   *twoway.MultiRequestReceiver
}

// multiRoundTrip seals one request for receivers whose key ids are their
// indices in pks and sks; see multiRoundTripWith.
func multiRoundTrip(t *testing.T, suite hpke.Suite, pks []circlkem.PublicKey, sks []circlkem.PrivateKey, pt []byte, opts ...twoway.Option) {
	t.Helper()
	var rcvs []multiReceiver
	for i := range pks {
		rcv, err := twoway.NewMultiRequestReceiver(suite, byte(i), sks[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		rcvs = append(rcvs, multiReceiver{byte(i), pks[i], rcv})
	}
	multiRoundTripWith(t, twoway.NewMultiRequestSender(suite, nil), rcvs, pt, opts...)
}

// multiRoundTripWith seals one request with snd for every receiver in rcvs
// and checks that each opens it and that each response opens only with its
// own opener.
func multiRoundTripWith(t *testing.T, snd *twoway.MultiRequestSender, rcvs []multiReceiver, pt []byte, opts ...twoway.Option) {
	t.Helper()
	sealer, err := snd.NewRequestSealer(bytes.NewReader(pt), []byte("m"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := io.ReadAll(sealer)
	if err != nil {
		t.Fatal(err)
	}
	var resps [][]byte
	var openers []twoway.ResponseOpenerFunc
	for i, r := range rcvs {
		ek, openResp, err := sealer.EncapsulateKey(r.keyID, r.pk)
		if err != nil {
			t.Fatal(err)
		}
		opener, err := r.rcv.NewRequestOpener(ek, bytes.NewReader(ct), []byte("m"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(opener)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("receiver %d: %v", i, err)
		}
		rs, err := opener.NewResponseSealer(bytes.NewReader(pattern(i+10)), []byte("r"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		rct, err := io.ReadAll(rs)
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, rct)
		openers = append(openers, openResp)
	}
	for i := range resps {
		for j := range openers {
			ro, err := openers[j](bytes.NewReader(resps[i]), []byte("r"), opts...)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(ro)
			}
			if i == j && (err != nil || !bytes.Equal(got, pattern(i+10))) {
				t.Fatalf("response %d: %v", i, err)
			}
			if i != j && err == nil {
				t.Fatalf("response %d opened with receiver %d's opener", i, j)
			}
		}
	}
}

// drain reads r to its end through buf, as io.Copy does with a reader that
// has no WriteTo, and returns the number of bytes read.
func drain(tb testing.TB, r io.Reader, buf []byte) int {
	total := 0
	for {
		n, err := r.Read(buf)
		total += n
		if err == io.EOF {
			return total
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The sealers and openers of this package and of the reference
// (github.com/openpcc/twoway) have the same methods but for their Option
// type O; the tests and benchmarks that compare the two are written once,
// against these.
type (
	requestSealer[O any] interface {
		io.Reader
		NewResponseOpener(ct io.Reader, mediaType []byte, opts ...O) (io.Reader, error)
	}
	requestOpener[O any, RS io.Reader] interface {
		io.Reader
		NewResponseSealer(pt io.Reader, mediaType []byte, opts ...O) (RS, error)
	}
	multiRequestSealer[O any, F ~func(io.Reader, []byte, ...O) (io.Reader, error)] interface {
		io.Reader
		EncapsulateKey(keyID byte, pubKey circlkem.PublicKey) ([]byte, F, error)
	}
)
