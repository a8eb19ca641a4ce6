package tpm2

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// TestTwowayRoundTrips opens one-to-one and one-to-many requests, chunked
// and unchunked, with the receiver key in the TPM, and seals the responses.
func TestTwowayRoundTrips(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	for _, c := range []struct {
		curve ecdh.Curve
		kem   hpke.KEM
		kdf   hpke.KDF
	}{
		{ecdh.P256(), hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256},
		{ecdh.P384(), hpke.KEM_P384_HKDF_SHA384, hpke.KDF_HKDF_SHA384},
	} {
		t.Run(fmt.Sprint(c.curve), func(t *testing.T) {
			key := createKey(t, tp, c.curve)
			suite := hpke.NewSuite(c.kem, c.kdf, hpke.AEAD_AES256GCM)
			pub, err := c.kem.Scheme().UnmarshalBinaryPublicKey(key.PublicKeyBytes())
			if err != nil {
				t.Fatal(err)
			}
			rcv, err := twoway.NewRequestReceiverForKey(2, key, c.kdf, hpke.AEAD_AES256GCM, nil)
			if err != nil {
				t.Fatal(err)
			}
			mrcv, err := twoway.NewMultiRequestReceiverForKey(2, key, c.kdf, hpke.AEAD_AES256GCM, nil)
			if err != nil {
				t.Fatal(err)
			}
			snd, _ := twoway.NewRequestSender(suite, 2, pub, nil)
			msnd := twoway.NewMultiRequestSender(suite, nil)
			for _, opts := range [][]twoway.Option{nil, {twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(1000)}} {
				req := bytes.Repeat([]byte("request "), 1000)
				resp := bytes.Repeat([]byte("response "), 900)

				s, err := snd.NewRequestSealer(bytes.NewReader(req), []byte("q"), opts...)
				if err != nil {
					t.Fatal(err)
				}
				ct, _ := io.ReadAll(s)
				o, err := rcv.NewRequestOpenerContext(ctx, bytes.NewReader(ct), []byte("q"), opts...)
				if err != nil {
					t.Fatal(err)
				}
				checkExchange(t, o, req, resp, func(rct []byte) (io.Reader, error) {
					return s.NewResponseOpener(bytes.NewReader(rct), []byte("a"), opts...)
				}, opts)

				ms, _ := msnd.NewRequestSealer(bytes.NewReader(req), []byte("q"), opts...)
				mct, _ := io.ReadAll(ms)
				ek, openResp, err := ms.EncapsulateKey(2, pub)
				if err != nil {
					t.Fatal(err)
				}
				mo, err := mrcv.NewRequestOpenerContext(ctx, ek, bytes.NewReader(mct), []byte("q"), opts...)
				if err != nil {
					t.Fatal(err)
				}
				checkExchange(t, mo, req, resp, func(rct []byte) (io.Reader, error) {
					return openResp(bytes.NewReader(rct), []byte("a"), opts...)
				}, opts)
			}
		})
	}
}

func checkExchange(t *testing.T, o *twoway.RequestOpener, req, resp []byte, openResp func([]byte) (io.Reader, error), opts []twoway.Option) {
	t.Helper()
	got, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(got, req) {
		t.Fatalf("request: %v", err)
	}
	rs, err := o.NewResponseSealer(bytes.NewReader(resp), []byte("a"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	rct, _ := io.ReadAll(rs)
	r, err := openResp(rct)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, resp) {
		t.Fatalf("response: %v", err)
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
