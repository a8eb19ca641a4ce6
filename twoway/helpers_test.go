package twoway_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

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
func keyPair(t testing.TB, k hpke.KEM, seed string) (kem.PublicKey, kem.PrivateKey) {
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

// roundTrip seals pt as a one-to-one request and a response, opens both, and
// returns the encapsulated request and response.
func roundTrip(t testing.TB, suite hpke.Suite, pk kem.PublicKey, sk kem.PrivateKey, pt []byte, src func([]byte) io.Reader, bufLen int, opts ...twoway.Option) (encReq, encResp []byte) {
	t.Helper()
	snd, err := twoway.NewRequestSender(suite, 7, pk, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := twoway.NewRequestReceiver(suite, 7, sk, nil)
	if err != nil {
		t.Fatal(err)
	}
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
	return encReq, encResp
}
