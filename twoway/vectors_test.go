package twoway_test

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/internal/keyschedule"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The example of RFC 9458 Appendix A, and the example of
// draft-ietf-ohai-chunked-ohttp-08 Appendix A.
type ohttpExample struct {
	name        string
	skR         string
	keyConfig   string
	skE         string
	request     string
	encRequest  string
	response    string
	respNonce   string
	encResponse string
	reqMedia    string
	respMedia   string
	reqReads    []int // chunked: the sizes of the sender's reads
	respReads   []int
}

var rfc9458Example = ohttpExample{
	name:        "RFC 9458",
	skR:         "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a",
	keyConfig:   "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003",
	skE:         "bc51d5e930bda26589890ac7032f70ad12e4ecb37abb1b65b1256c9c48999c73",
	request:     "00034745540568747470730b6578616d706c652e636f6d012f",
	encRequest:  "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525",
	response:    "0140c8",
	respNonce:   "c789e7151fcba46158ca84b04464910d",
	encResponse: "c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd",
	reqMedia:    "message/bhttp request",
	respMedia:   "message/bhttp response",
}

var chunkedExample = ohttpExample{
	name:        "draft-ietf-ohai-chunked-ohttp-08",
	skR:         "1c190d72acdbe4dbc69e680503bb781a932c70a12c8f3754434c67d8640d8698",
	keyConfig:   "010020668eb21aace159803974a4c67f08b4152d29bed10735fd08f98ccdd6fe09570800080001000100010003",
	skE:         "b26d565f3f875ed480d1abced3d665159650c99174fd0b124ac4bda0c64ae324",
	request:     "00034745540568747470730b6578616d706c652e636f6d012f",
	encRequest:  "010020000100018811eb457e100811c40a0aa71340a1b81d804bb986f736f2f566a7199761a0321c2ad24942d4d692563012f2980c8fef437a336b9b2fc938ef77a5834f1d2e33d8fd25577afe31bd1c79d094f76b6250ae6549b473ecd950501311001c6c1395d0ef7c1022297966307b8a7f",
	response:    "0140c8",
	respNonce:   "bcce7f4cb921309ba5d62edf1769ef09",
	encResponse: "bcce7f4cb921309ba5d62edf1769ef091179bf1cc87fa0e2c02de4546945aa3d1e4812b348b5bd4c594c16b6170b07b475845d1f3200ed9d8a796617a5b27265f4d73247f639",
	reqMedia:    "message/bhttp chunked request",
	respMedia:   "message/bhttp chunked response",
	reqReads:    []int{12, 13},
	respReads:   []int{1, 2},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e ohttpExample) chunkOpts() []twoway.Option {
	if e.reqReads == nil {
		return nil
	}
	return []twoway.Option{twoway.EnableChunking()}
}

// sealOpts are the options of the example's sealers: chunked, one chunk
// per read of the source, as the example's chunks were made.
func (e ohttpExample) sealOpts() []twoway.Option {
	if e.reqReads == nil {
		return nil
	}
	return append(e.chunkOpts(), twoway.WithChunkPerRead())
}

// config returns the example's key configuration.
func (e ohttpExample) config(t testing.TB) twoway.KeyConfig {
	t.Helper()
	var kc twoway.KeyConfig
	if err := kc.UnmarshalBinary(unhex(t, e.keyConfig)); err != nil {
		t.Fatal(err)
	}
	return kc
}

// pub returns the public key of the example's key configuration.
func (e ohttpExample) pub(t testing.TB) circlkem.PublicKey {
	t.Helper()
	pk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(e.config(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestOHTTPExamplesReceiver opens each example's encapsulated request with
// its skR and, fed the example's response nonce as randomness, produces its
// encapsulated response byte for byte.
func TestOHTTPExamplesReceiver(t *testing.T) {
	for _, e := range []ohttpExample{rfc9458Example, chunkedExample} {
		t.Run(e.name, func(t *testing.T) {
			sk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPrivateKey(unhex(t, e.skR))
			if err != nil {
				t.Fatal(err)
			}
			rcv, err := twoway.NewRequestReceiver(testSuite, e.config(t).KeyID, sk, bytes.NewReader(unhex(t, e.respNonce)))
			if err != nil {
				t.Fatal(err)
			}
			checkExampleReceiver(t, e, rcv)
		})
	}
}

// checkExampleReceiver opens the example's encapsulated request with rcv,
// whose random source must be the example's response nonce, and checks
// that the response it seals is the example's byte for byte.
func checkExampleReceiver(t *testing.T, e ohttpExample, rcv *twoway.RequestReceiver) {
	t.Helper()
	opener, err := rcv.NewRequestOpener(bytes.NewReader(unhex(t, e.encRequest)), []byte(e.reqMedia), e.chunkOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(opener)
	if err != nil || !bytes.Equal(got, unhex(t, e.request)) {
		t.Fatalf("request %x, want %s: %v", got, e.request, err)
	}
	rs, err := opener.NewResponseSealer(newReads(unhex(t, e.response), e.respReads), []byte(e.respMedia), e.sealOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := io.ReadAll(rs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, unhex(t, e.encResponse)) {
		t.Fatalf("encapsulated response\n got %x\nwant %s", enc, e.encResponse)
	}
}

// TestOHTTPExamplesSender seals each example's request with the example's
// ephemeral key and checks the encapsulated request byte for byte, then
// opens the example's encapsulated response with the sealer.
func TestOHTTPExamplesSender(t *testing.T) {
	for _, e := range []ohttpExample{rfc9458Example, chunkedExample} {
		t.Run(e.name, func(t *testing.T) {
			suite := fixedEphemeralSuite{skE: unhex(t, e.skE)}
			snd, err := twoway.NewRequestSenderWithCustomSuite(suite, e.config(t).KeyID, e.pub(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			sealer, err := snd.NewRequestSealer(newReads(unhex(t, e.request), e.reqReads), []byte(e.reqMedia), e.sealOpts()...)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := io.ReadAll(sealer)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, unhex(t, e.encRequest)) {
				t.Fatalf("encapsulated request\n got %x\nwant %s", enc, e.encRequest)
			}
			ro, err := sealer.NewResponseOpener(bytes.NewReader(unhex(t, e.encResponse)), []byte(e.respMedia), e.chunkOpts()...)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := io.ReadAll(ro)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(resp, unhex(t, e.response)) {
				t.Fatalf("response %x, want %s", resp, e.response)
			}
		})
	}
}

// reads is a source whose Read calls return the given sizes, then io.EOF.
type reads struct {
	data  []byte
	sizes []int
}

func newReads(data []byte, sizes []int) io.Reader {
	if sizes == nil {
		return bytes.NewReader(data)
	}
	return &reads{data: data, sizes: sizes}
}

func (r *reads) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n, r.sizes = r.sizes[0], r.sizes[1:]
	}
	if n > len(p) {
		return 0, fmt.Errorf("reads: buffer of %d bytes for a read of %d", len(p), n)
	}
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// fixedEphemeralSuite is a test-only HPKESuite for DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256, AES-128-GCM whose sender uses a fixed
// ephemeral key, as the RFC examples do. It goes through the custom-suite
// path of the package, so it also tests that path.
type fixedEphemeralSuite struct{ skE []byte }

func (s fixedEphemeralSuite) Params() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM
}

func (s fixedEphemeralSuite) NewSender(pub circlkem.PublicKey, info []byte) (twoway.HPKESender, error) {
	return fixedSender{s, pub, info}, nil
}

func (s fixedEphemeralSuite) NewReceiver(circlkem.PrivateKey, []byte) (twoway.HPKEReceiver, error) {
	return nil, fmt.Errorf("fixedEphemeralSuite: sender only")
}

type fixedSender struct {
	s    fixedEphemeralSuite
	pub  circlkem.PublicKey
	info []byte
}

func (f fixedSender) Setup(io.Reader) ([]byte, twoway.HPKESealer, error) {
	skE, err := ecdh.X25519().NewPrivateKey(f.s.skE)
	if err != nil {
		return nil, nil, err
	}
	pkRb, _ := f.pub.MarshalBinary()
	pkR, err := ecdh.X25519().NewPublicKey(pkRb)
	if err != nil {
		return nil, nil, err
	}
	dh, err := skE.ECDH(pkR)
	if err != nil {
		return nil, nil, err
	}
	enc := skE.PublicKey().Bytes()
	d, _ := keyschedule.NewDHKEM(0x20)
	ss, err := d.SharedSecret(dh, enc, pkRb)
	if err != nil {
		return nil, nil, err
	}
	ctx, err := keyschedule.NewContext(keyschedule.Suite{KEM: 0x20, KDF: 1, AEAD: 1}, ss, f.info)
	if err != nil {
		return nil, nil, err
	}
	return enc, allocSealer{ctx}, nil
}

// allocSealer presents a keyschedule context through the allocating
// HPKESealer interface.
type allocSealer struct{ c *keyschedule.Context }

func (a allocSealer) Seal(pt, aad []byte) ([]byte, error) { return a.c.Seal(nil, pt, aad) }
func (a allocSealer) Export(ctx []byte, l uint) []byte {
	b, err := a.c.Export(ctx, int(l))
	if err != nil {
		panic(err)
	}
	return b
}

// requestContext returns the sending HPKE context of the example's request.
func (e ohttpExample) requestContext(t *testing.T) *keyschedule.Context {
	t.Helper()
	hdr, _ := twoway.RequestHeader{KeyID: e.config(t).KeyID, KemID: hpke.KEM_X25519_HKDF_SHA256, KDFID: hpke.KDF_HKDF_SHA256, AEADID: hpke.AEAD_AES128GCM}.MarshalBinary()
	inf := append(append([]byte(e.reqMedia), 0), hdr...)
	snd, _ := fixedEphemeralSuite{skE: unhex(t, e.skE)}.NewSender(e.pub(t), inf)
	_, sealer, err := snd.Setup(nil)
	if err != nil {
		t.Fatal(err)
	}
	return sealer.(allocSealer).c
}
