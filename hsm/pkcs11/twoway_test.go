package pkcs11_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

var _ kem.PrivateKey = (*pkcs11.Key)(nil)

// TestTwowayRoundTrips runs one-to-one and one-to-many round trips, chunked
// and unchunked, with the receiver key generated on the token, for every
// curve the token supports.
func TestTwowayRoundTrips(t *testing.T) {
	_, tok := openToken(t)
	ctx := context.Background()
	for i, c := range dhCurves {
		t.Run(c.name, func(t *testing.T) {
			key, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: []byte{0xb0, byte(i)}, Label: "rt-" + c.name})
			if err != nil {
				t.Fatal(err)
			}
			rt, err := roundtrip.New(key, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305, 5*roundtrip.ChunkLen+3)
			if err != nil {
				t.Fatal(err)
			}
			for s := range roundtrip.NumShapes {
				if err := rt.Run(ctx, s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
		})
	}
}

// TestRFC9458ExampleOnToken imports the RFC 9458 Appendix A skR into the
// token, opens the example's encapsulated request with it and, fed the
// example's response nonce, produces the example's encapsulated response
// byte for byte. (That imported keys cannot be read back is
// TestPrivateValueUnreadable's.)
func TestRFC9458ExampleOnToken(t *testing.T) {
	_, tok := openToken(t)
	ctx := context.Background()
	skR := unhexT(t, "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a")
	priv, err := ecdh.X25519().NewPrivateKey(skR)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tok.ImportKey(ctx, priv, pkcs11.KeyRef{ID: []byte{0x94, 0x58}, Label: "rfc9458"})
	if err != nil {
		t.Fatal(err)
	}

	rcv, err := twoway.NewRequestReceiverForKey(1, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM,
		bytes.NewReader(unhexT(t, "c789e7151fcba46158ca84b04464910d")))
	if err != nil {
		t.Fatal(err)
	}
	encReq := unhexT(t, "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525")
	o, err := rcv.NewRequestOpenerContext(ctx, bytes.NewReader(encReq), []byte("message/bhttp request"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(o)
	if !bytes.Equal(got, unhexT(t, "00034745540568747470730b6578616d706c652e636f6d012f")) {
		t.Fatalf("request %x", got)
	}
	rs, err := o.NewResponseSealer(bytes.NewReader(unhexT(t, "0140c8")), []byte("message/bhttp response"))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := io.ReadAll(rs)
	if want := unhexT(t, "c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd"); !bytes.Equal(enc, want) {
		t.Fatalf("encapsulated response %x, want %x", enc, want)
	}
}

func unhexT(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadPublicKey reads public keys by id and by label with no PIN and no
// login anywhere in the process, checks them against the keys' own, and
// checks the errors for a missing key, disagreeing public keys and a URI
// that names no key.
func TestReadPublicKey(t *testing.T) {
	sh, tok := openToken(t)
	ctx := context.Background()
	want := map[string][]byte{}
	for i, c := range dhCurves {
		k, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: []byte{0xc0, byte(i)}, Label: "pub-" + c.name})
		if err != nil {
			t.Fatal(err)
		}
		want[c.name] = k.PublicKeyBytes()
	}
	for _, id := range [][]byte{{0xd0}, {0xd1}} {
		if _, err := tok.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: id, Label: "twice"}); err != nil {
			t.Fatal(err)
		}
	}
	// SoftHSM2 keeps one login per process: close the Token so that
	// nothing is logged in while ReadPublicKey reads.
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range dhCurves {
		for _, u := range []string{
			sh.URIWithoutPIN(fmt.Sprintf("id=%%C0%%%02X", i)),
			sh.URIWithoutPIN("object=pub-" + c.name),
		} {
			id, pub, err := pkcs11.ReadPublicKey(ctx, u)
			if err != nil {
				t.Fatalf("%s: %v", u, err)
			}
			if id != c.kem || !bytes.Equal(pub, want[c.name]) {
				t.Fatalf("%s: read %v %x, want %v %x", u, id, pub, c.kem, want[c.name])
			}
		}
	}
	if _, _, err := pkcs11.ReadPublicKey(ctx, sh.URIWithoutPIN("id=%FF%FF")); !errors.Is(err, pkcs11.ErrPublicKeyNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, _, err := pkcs11.ReadPublicKey(ctx, sh.URIWithoutPIN("object=twice")); !errors.Is(err, pkcs11.ErrKeyAmbiguous) {
		t.Fatalf("two different keys with one label: %v", err)
	}
	if _, _, err := pkcs11.ReadPublicKey(ctx, sh.URIWithoutPIN()); !errors.Is(err, pkcs11.ErrInvalidURI) {
		t.Fatalf("no key named: %v", err)
	}
}
