package attest

import (
	"bytes"
	"crypto/elliptic"
	"math/big"
	"testing"

	gotpm "github.com/google/go-tpm/tpm2"
)

// FuzzParseEvidence: the parser never panics, accepts only documents it
// marshals back to an equivalent document, and Verify never panics on
// what it accepts. Seeds: testdata/fuzz/FuzzParseEvidence and the
// testdata evidence.
func FuzzParseEvidence(f *testing.F) {
	good, opts := testEvidence(f)
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvidence(b)
		if err != nil {
			return
		}
		out, err := ev.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed evidence: %v", err)
		}
		again, err := ParseEvidence(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		out2, _ := again.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatal("parse and marshal are not stable")
		}
		_, _ = Verify(ev, opts)
		_, _, _ = MakeChallenge(ev)
	})
}

// FuzzVerifyField replaces one field of the testdata evidence with the
// fuzzer's bytes: Verify never panics, and accepts only the original,
// but for the signature, where it accepts also the one other valid
// signature ECDSA allows, (R, n-S), which it cannot tell from the TPM's
// (see checkSignature): for that field an accepted replacement must have
// the original R, byte for byte, and S or n-S.
func FuzzVerifyField(f *testing.F) {
	good, opts := testEvidence(f)
	ev, err := ParseEvidence(good)
	if err != nil {
		f.Fatal(err)
	}
	fields := func(e *Evidence) []*[]byte {
		return []*[]byte{&e.KeyConfig, &e.Nonce, &e.EKCert, &e.EKPublic, &e.AKPublic, &e.KeyPublic, &e.CertInfo, &e.Signature}
	}
	const ekPublicField, signatureField = 3, 7
	for i, p := range fields(ev) {
		f.Add(uint8(i), *p)
	}
	// The same values, encoded otherwise.
	f.Add(uint8(ekPublicField), ekPublicLeadingZero(f, ev))
	f.Add(uint8(signatureField), signatureWith(f, ev, func(r, s []byte) ([]byte, []byte) { return append([]byte{0}, r...), s }))
	f.Add(uint8(signatureField), signatureWith(f, ev, func(r, s []byte) ([]byte, []byte) { return r, append([]byte{0}, s...) }))
	f.Add(uint8(signatureField), signatureWith(f, ev, func(r, s []byte) ([]byte, []byte) { return r, negS(s) }))
	origR, origS := sigRS(f, ev.Signature)
	f.Fuzz(func(t *testing.T, i uint8, b []byte) {
		e := *ev
		fs := fields(&e)
		n := int(i) % len(fs)
		p := fs[n]
		same := bytes.Equal(*p, b)
		*p = b
		_, err := Verify(&e, opts)
		if err != nil || same {
			return
		}
		if n != signatureField {
			t.Fatalf("field %d replaced by %x: verified", n, b)
		}
		r, s := sigRS(t, b)
		neg := new(big.Int).Sub(elliptic.P256().Params().N, origS)
		if !bytes.Equal(r, origR) || (s.Cmp(origS) != 0 && s.Cmp(neg) != 0) {
			t.Fatalf("signature replaced by %x (R %x, S %x): verified, and it is neither (R, S) nor (R, n-S)", b, r, s)
		}
	})
}

// sigRS returns the R bytes and the S value of an ECDSA TPMT_SIGNATURE.
func sigRS(t testing.TB, b []byte) ([]byte, *big.Int) {
	t.Helper()
	sig, err := gotpm.Unmarshal[gotpm.TPMTSignature](b)
	if err != nil {
		t.Fatal(err)
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		t.Fatal(err)
	}
	return e.SignatureR.Buffer, new(big.Int).SetBytes(e.SignatureS.Buffer)
}
