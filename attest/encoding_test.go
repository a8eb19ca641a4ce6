package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"

	gotpm "github.com/google/go-tpm/tpm2"
)

// Altered encodings of the testdata evidence that say the same thing: a
// verifier that compares values, not bytes, accepts them, and the
// evidence is then not the only document that verifies.

func testdataEvidence(t testing.TB) (*Evidence, Options) {
	t.Helper()
	b, opts := testEvidence(t)
	ev, err := ParseEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	return ev, opts
}

// ekPublicLeadingZero is the testdata's RSA ek_public with a zero byte
// in front of the modulus: the same key.
func ekPublicLeadingZero(t testing.TB, ev *Evidence) []byte {
	t.Helper()
	pub, err := gotpm.Unmarshal[gotpm.TPMTPublic](ev.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	n, err := pub.Unique.RSA()
	if err != nil {
		t.Fatal(err)
	}
	pub.Unique = gotpm.NewTPMUPublicID(gotpm.TPMAlgRSA, &gotpm.TPM2BPublicKeyRSA{Buffer: append([]byte{0}, n.Buffer...)})
	return gotpm.Marshal(*pub)
}

// signatureWith is the testdata's signature with R and S changed by f.
func signatureWith(t testing.TB, ev *Evidence, f func(r, s []byte) ([]byte, []byte)) []byte {
	t.Helper()
	sig, err := gotpm.Unmarshal[gotpm.TPMTSignature](ev.Signature)
	if err != nil {
		t.Fatal(err)
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		t.Fatal(err)
	}
	r, s := f(bytes.Clone(e.SignatureR.Buffer), bytes.Clone(e.SignatureS.Buffer))
	return gotpm.Marshal(gotpm.TPMTSignature{SigAlg: sig.SigAlg, Signature: gotpm.NewTPMUSignature(gotpm.TPMAlgECDSA, &gotpm.TPMSSignatureECC{
		Hash: e.Hash, SignatureR: gotpm.TPM2BECCParameter{Buffer: r}, SignatureS: gotpm.TPM2BECCParameter{Buffer: s},
	})})
}

// TestEKPublicLeadingZero: an ek_public whose modulus has a leading zero
// byte holds the certificate's key, but is not the EK's public area: it
// is refused, by Verify and by MakeChallenge.
func TestEKPublicLeadingZero(t *testing.T) {
	ev, opts := testdataEvidence(t)
	if len(ev.EKPublic) != 314 {
		t.Fatalf("testdata ek_public of %d bytes, want an RSA 2048 EK", len(ev.EKPublic))
	}
	ev.EKPublic = ekPublicLeadingZero(t, ev)
	if _, err := Verify(ev, opts); !errors.Is(err, ErrEKPublic) {
		t.Fatalf("Verify with a leading zero on the EK modulus: %v, want ErrEKPublic", err)
	}
	if _, _, err := MakeChallenge(ev); !errors.Is(err, ErrEKPublic) {
		t.Fatalf("MakeChallenge with a leading zero on the EK modulus: %v, want ErrEKPublic", err)
	}
}

// TestSignatureLeadingZero: R or S with a zero byte in front is the same
// integer, but not the TPM's encoding: refused.
func TestSignatureLeadingZero(t *testing.T) {
	for name, f := range map[string]func(r, s []byte) ([]byte, []byte){
		"R": func(r, s []byte) ([]byte, []byte) { return append([]byte{0}, r...), s },
		"S": func(r, s []byte) ([]byte, []byte) { return r, append([]byte{0}, s...) },
	} {
		ev, opts := testdataEvidence(t)
		ev.Signature = signatureWith(t, ev, f)
		if _, err := Verify(ev, opts); !errors.Is(err, ErrSignature) {
			t.Errorf("Verify with a leading zero on %s: %v, want ErrSignature", name, err)
		}
	}
	// Short with a leading zero: neither padded nor minimal.
	ev, opts := testdataEvidence(t)
	ev.Signature = signatureWith(t, ev, func(r, s []byte) ([]byte, []byte) { return r, append([]byte{0}, s[2:]...) })
	if _, err := Verify(ev, opts); !errors.Is(err, ErrSignature) || !bytes.Contains([]byte(err.Error()), []byte("leading zero")) {
		t.Errorf("Verify with a 31-byte S starting with zero: %v, want ErrSignature for the encoding", err)
	}
}

// TestSignatureMalleability documents what the verifier cannot refuse:
// (R, n-S) is a valid signature wherever (R, S) is, and TPMs do not
// normalise S. FuzzVerifyField allows it, and only it, for the signature.
func TestSignatureMalleability(t *testing.T) {
	ev, opts := testdataEvidence(t)
	ev.Signature = signatureWith(t, ev, func(r, s []byte) ([]byte, []byte) { return r, negS(s) })
	if _, err := Verify(ev, opts); err != nil {
		t.Fatalf("(R, n-S): %v; if the verifier now refuses it, FuzzVerifyField can assert uniqueness for the signature too", err)
	}
}

// negS returns n-s for P-256's order n, encoded as the verifier accepts
// it (minimal, or at 32 bytes).
func negS(s []byte) []byte {
	return new(big.Int).Sub(elliptic.P256().Params().N, new(big.Int).SetBytes(s)).Bytes()
}

// TestEKPublicECC: an ECC P-256 EK is accepted as the L-2 template with
// the certificate's point at full width, and only so.
func TestEKPublicECC(t *testing.T) {
	for range 64 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		want, ok := ekPublicFor(gotpm.ECCEKTemplate, &k.PublicKey)
		if !ok {
			t.Fatal("ekPublicFor refused a P-256 key for the L-2 template")
		}
		raw := gotpm.Marshal(want)
		if _, err := checkEKPublic(raw, &k.PublicKey); err != nil {
			t.Fatalf("the EK public area of the certificate's key: %v", err)
		}
		if _, ok := ekPublicFor(gotpm.RSAEKTemplate, &k.PublicKey); ok {
			t.Fatal("ekPublicFor matched an ECC key to the RSA template")
		}
		p, _ := want.Unique.ECC()
		for name, x := range map[string][]byte{
			"leading zero": append([]byte{0}, p.X.Buffer...),
			"stripped":     bytes.TrimLeft(p.X.Buffer, "\x00"),
		} {
			if len(x) == len(p.X.Buffer) {
				continue // X has no leading zero to strip
			}
			alt := want
			alt.Unique = gotpm.NewTPMUPublicID(gotpm.TPMAlgECC, &gotpm.TPMSECCPoint{X: gotpm.TPM2BECCParameter{Buffer: x}, Y: p.Y})
			if _, err := checkEKPublic(gotpm.Marshal(alt), &k.PublicKey); !errors.Is(err, ErrEKPublic) {
				t.Fatalf("X %s: %v, want ErrEKPublic", name, err)
			}
		}
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if _, err := checkEKPublic(raw, &other.PublicKey); !errors.Is(err, ErrEKPublic) {
			t.Fatalf("another certificate's key: %v, want ErrEKPublic", err)
		}
	}
}
