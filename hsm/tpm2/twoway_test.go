package tpm2

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// TestTwowayRoundTrips runs one-to-one and one-to-many round trips, chunked
// and unchunked, with the receiver key in the TPM.
func TestTwowayRoundTrips(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	for _, c := range []struct {
		curve ecdh.Curve
		kdf   hpke.KDF
	}{
		{ecdh.P256(), hpke.KDF_HKDF_SHA256},
		{ecdh.P384(), hpke.KDF_HKDF_SHA384},
	} {
		t.Run(fmt.Sprint(c.curve), func(t *testing.T) {
			rt, err := roundtrip.New(createKey(t, tp, c.curve), c.kdf, hpke.AEAD_AES256GCM, 5*roundtrip.ChunkLen+3)
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

// TestRFC9458ConstructionMatchesSoftware imports a known P-256 key into the
// TPM and checks that the same request, answered with the same response
// nonce, gives the same encapsulated response as the software key.
func TestRFC9458ConstructionMatchesSoftware(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	skBytes := sha256.Sum256([]byte("a P-256 key imported into the TPM"))
	priv, err := ecdh.P256().NewPrivateKey(skBytes[:])
	if err != nil {
		t.Fatal(err)
	}
	hwKey, err := tp.ImportKey(ctx, priv)
	if err != nil {
		t.Fatal(err)
	}
	closeKey(t, hwKey)
	softKey, err := kem.NewPrivateKey(kem.DHKEMP256HKDFSHA256, skBytes[:])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hwKey.PublicKeyBytes(), softKey.PublicKeyBytes()) {
		t.Fatal("imported key has another public key")
	}
	suite := hpke.NewSuite(hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	pub, _ := hpke.KEM_P256_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(softKey.PublicKeyBytes())
	snd, _ := twoway.NewRequestSender(suite, 1, pub, nil)
	s, _ := snd.NewRequestSealer(bytes.NewReader([]byte("GET / over OHTTP")), []byte("message/bhttp request"))
	encReq, _ := io.ReadAll(s)

	// Both receivers draw the same response nonce (max(Nn, Nk) = 16 bytes).
	nonce := sha256.Sum256([]byte("response nonce"))
	answer := func(key kem.PrivateKey) []byte {
		rcv, err := twoway.NewRequestReceiverForKey(1, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, bytes.NewReader(nonce[:16]))
		if err != nil {
			t.Fatal(err)
		}
		o, err := rcv.NewRequestOpenerContext(ctx, bytes.NewReader(encReq), []byte("message/bhttp request"))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := io.ReadAll(o); string(got) != "GET / over OHTTP" {
			t.Fatalf("request %q", got)
		}
		rs, _ := o.NewResponseSealer(bytes.NewReader([]byte("200 OK")), []byte("message/bhttp response"))
		b, _ := io.ReadAll(rs)
		return b
	}
	hw, soft := answer(hwKey), answer(softKey)
	if !bytes.Equal(hw, soft) {
		t.Fatalf("TPM response %x differs from software response %x", hw, soft)
	}
	r, err := s.NewResponseOpener(bytes.NewReader(hw), []byte("message/bhttp response"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); string(got) != "200 OK" {
		t.Fatalf("response %q", got)
	}
}
