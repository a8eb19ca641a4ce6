package attest

import (
	"bytes"
	"testing"
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
// fuzzer's bytes: Verify never panics, and accepts only the original.
func FuzzVerifyField(f *testing.F) {
	good, opts := testEvidence(f)
	ev, err := ParseEvidence(good)
	if err != nil {
		f.Fatal(err)
	}
	fields := func(e *Evidence) []*[]byte {
		return []*[]byte{&e.KeyConfig, &e.Nonce, &e.EKCert, &e.EKPublic, &e.AKPublic, &e.KeyPublic, &e.CertInfo, &e.Signature}
	}
	for i, p := range fields(ev) {
		f.Add(uint8(i), *p)
	}
	f.Fuzz(func(t *testing.T, i uint8, b []byte) {
		e := *ev
		fs := fields(&e)
		p := fs[int(i)%len(fs)]
		same := bytes.Equal(*p, b)
		*p = b
		_, err := Verify(&e, opts)
		if err == nil && !same {
			t.Fatalf("field %d replaced by %x: verified", int(i)%len(fs), b)
		}
	})
}
