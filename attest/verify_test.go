package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The testdata were made by tpm2attest's TestWriteTestdata on a swtpm
// with EK certificates; these tests need no TPM.

var testTime = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testEvidence(t testing.TB) ([]byte, Options) {
	t.Helper()
	b, err := os.ReadFile("testdata/evidence.json")
	if err != nil {
		t.Fatal(err)
	}
	kc, err := os.ReadFile("testdata/key-config.bin")
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := twoway.ParseKeyConfigs(kc)
	if err != nil {
		t.Fatal(err)
	}
	return b, Options{Roots: testenv.CertPool(t, "testdata/root.pem"), KeyConfigs: cfgs, Nonce: []byte("testdata nonce"), Time: testTime}
}

func TestVerifyTestdata(t *testing.T) {
	b, opts := testEvidence(t)
	ev, err := ParseEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Verify(ev, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if r.KeyID() != 1 || !r.KeyConfigPublished || !r.NonceChecked || r.Imported || r.EK.Issuer != "CN=swtpm-localca" {
		t.Fatalf("result %+v", r)
	}
	// Round trip: the parsed evidence marshals to the same document.
	out, err := ev.Marshal()
	if err != nil || !bytes.Equal(out, b) {
		t.Fatalf("Marshal does not give back the document: %v", err)
	}
	// Certificates expire: before the CA existed, the chain is refused.
	opts.Time = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := Verify(ev, opts); !errors.Is(err, ErrEKCertificate) {
		t.Fatalf("before the CA existed: %v, want ErrEKCertificate", err)
	}
	// No roots.
	opts.Roots = nil
	if _, err := Verify(ev, opts); !errors.Is(err, ErrEKCertificate) {
		t.Fatalf("no roots: %v", err)
	}
}

func TestParseEvidenceStrict(t *testing.T) {
	good, _ := testEvidence(t)
	s := string(good)
	for _, tc := range []struct {
		name, doc string
		want      error
	}{
		{"repeated member", strings.Replace(s, `"version": 1,`, `"version": 1, "version": 1,`, 1), ErrMalformed},
		{"unknown member", strings.Replace(s, `"version": 1,`, `"version": 1, "extra": 1,`, 1), ErrMalformed},
		{"version 2", strings.Replace(s, `"version": 1,`, `"version": 2,`, 1), ErrUnsupportedVersion},
		{"no version", strings.Replace(s, `"version": 1,`, ``, 1), ErrMalformed},
		{"other format", strings.Replace(s, Format, "webauthn-tpm", 1), ErrMalformed},
		{"line break in base64", strings.Replace(s, `"ek_cert": "MII`, `"ek_cert": "MI\nI`, 1), ErrMalformed},
		{"unpadded base64", strings.Replace(s, `"nonce": "dGVzdGRhdGEgbm9uY2U="`, `"nonce": "dGVzdGRhdGEgbm9uY2U"`, 1), ErrMalformed},
		{"trailing data", s + "{}", ErrMalformed},
		{"missing field", strings.Replace(s, `"signature"`, `"x_signature"`, 1), ErrMalformed},
		{"empty nonce", strings.Replace(s, `"nonce": "dGVzdGRhdGEgbm9uY2U="`, `"nonce": ""`, 1), ErrMalformed},
		{"array", "[" + s + "]", ErrMalformed},
		{"too big", s + strings.Repeat(" ", MaxEvidenceSize), ErrMalformed},
		{"bad key config", strings.Replace(s, `"key_config": "AQAQ`, `"key_config": "AQAA`, 1), ErrMalformed},
	} {
		if _, err := ParseEvidence([]byte(tc.doc)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestVerifyStructuresCanonical(t *testing.T) {
	b, opts := testEvidence(t)
	ev, _ := ParseEvidence(b)
	for name, f := range map[string]*[]byte{"ek_public": &ev.EKPublic, "ak_public": &ev.AKPublic, "key_public": &ev.KeyPublic, "cert_info": &ev.CertInfo, "signature": &ev.Signature} {
		orig := *f
		*f = append(bytes.Clone(orig), 0)
		_, err := Verify(ev, opts)
		*f = orig
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s with a byte after it: %v, want ErrMalformed naming it", name, err)
		}
	}
}

func TestQualifyingDataIsUnambiguous(t *testing.T) {
	a := QualifyingData([]byte("ab"), []byte("c"))
	b := QualifyingData([]byte("a"), []byte("bc"))
	if bytes.Equal(a, b) || len(a) != 32 {
		t.Fatal("QualifyingData: (ab, c) and (a, bc) collide")
	}
}

// EK certificates made here, to test the extension handling.

type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test TPM CA"},
		NotBefore: testTime.Add(-time.Hour), NotAfter: testTime.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{k, c}
}

func tpmSAN(t *testing.T, extra ...pkix.AttributeTypeAndValue) pkix.Extension {
	t.Helper()
	rdn := pkix.RDNSequence{{
		{Type: oidTPMManufacturer, Value: "id:54455354"},
		{Type: oidTPMModel, Value: "TEST"},
		{Type: oidTPMVersion, Value: "id:00010002"},
	}}
	rdn[0] = append(rdn[0], extra...)
	name, err := asn1.Marshal(rdn)
	if err != nil {
		t.Fatal(err)
	}
	gn, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: gn})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Critical: true, Value: seq}
}

func (ca *testCA) ek(t *testing.T, eku []asn1.ObjectIdentifier, exts ...pkix.Extension) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: testTime.Add(-time.Hour), NotAfter: testTime.Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyAgreement, UnknownExtKeyUsage: eku, ExtraExtensions: exts}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestEKCertificateExtensions(t *testing.T) {
	ca := newTestCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	opts := Options{Roots: roots, Time: testTime}
	ekKP := []asn1.ObjectIdentifier{oidEKCertificateKP}

	info, _, err := VerifyEKCertificate(ca.ek(t, ekKP, tpmSAN(t)), nil, opts)
	if err != nil {
		t.Fatalf("EK certificate with the TCG SAN: %v", err)
	}
	if info.Manufacturer != "id:54455354" || info.Model != "TEST" || info.Version != "id:00010002" || info.Kind != "ECC P-256" {
		t.Fatalf("info %+v", info)
	}
	for _, tc := range []struct {
		name string
		der  []byte
		want string
	}{
		{"another critical extension", ca.ek(t, ekKP, tpmSAN(t), pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}), "1.2.3.4"},
		{"a SAN with a non-TCG attribute", ca.ek(t, ekKP, tpmSAN(t, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "x"})), "not a TCG TPM attribute"},
		{"an EKU without tcg-kp-EKCertificate", ca.ek(t, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}}, tpmSAN(t)), "tcg-kp-EKCertificate"},
	} {
		_, _, err := VerifyEKCertificate(tc.der, nil, opts)
		if !errors.Is(err, ErrEKCertificate) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrEKCertificate saying %q", tc.name, err, tc.want)
		}
	}
	// Another CA.
	other := newTestCA(t)
	if _, _, err := VerifyEKCertificate(other.ek(t, ekKP, tpmSAN(t)), nil, opts); !errors.Is(err, ErrEKCertificate) {
		t.Errorf("another CA: %v", err)
	}
}
