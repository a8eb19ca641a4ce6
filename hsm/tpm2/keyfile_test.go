package tpm2

import (
	"bytes"
	"crypto/ecdh"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	gotpm "github.com/google/go-tpm/tpm2"
)

// derTags returns the tags of the elements of a DER SEQUENCE's content.
func derTags(t testing.TB, der []byte) []string {
	t.Helper()
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(der, &seq); err != nil {
		t.Fatal(err)
	}
	var tags []string
	for rest := seq.Bytes; len(rest) > 0; {
		var el asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &el); err != nil {
			t.Fatal(err)
		}
		switch el.Class {
		case asn1.ClassContextSpecific:
			tags = append(tags, "["+string(rune('0'+el.Tag))+"]")
		default:
			tags = append(tags, map[int]string{asn1.TagOID: "OID", asn1.TagInteger: "INTEGER", asn1.TagOctetString: "OCTET STRING"}[el.Tag])
		}
	}
	return tags
}

// TestKeyFileFields (issue 11, bug 6): a key file holds the fields
// tpm2-openssl reads and no [4] description, which Debian's tpm2-openssl
// 1.1.1 refuses; [0] emptyAuth only for a key without auth value.
func TestKeyFileFields(t *testing.T) {
	_, tp := startTPM(t)
	for name, want := range map[string]string{
		"no auth":   "OID [0] INTEGER OCTET STRING OCTET STRING",
		"with auth": "OID INTEGER OCTET STRING OCTET STRING",
	} {
		var opts []Option
		if name == "with auth" {
			opts = append(opts, WithAuth([]byte("pw")))
		}
		b, err := createKey(t, tp, ecdh.P256(), opts...).KeyFile()
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "TSS2 PRIVATE KEY" {
			t.Fatalf("%s: not a TSS2 PRIVATE KEY PEM file:\n%s", name, b)
		}
		if got := strings.Join(derTags(t, blk.Bytes), " "); got != want {
			t.Errorf("%s: fields %s, want %s", name, got, want)
		}
	}
}

// signDecryptKeyFile creates, through the TPM's own connection, an EC key
// with sign and decrypt set, as tpm2-openssl and tpm2_create make them, and
// returns its key file.
func signDecryptKeyFile(t testing.TB, tp *TPM) []byte {
	t.Helper()
	tmpl := keyTemplate(gotpm.TPMECCNistP256)
	tmpl.ObjectAttributes.SignEncrypt = true
	var rsp *gotpm.CreateResponse
	parentID, err := tp.underSRK(testCtx(t), func(s *session, p *parent) error {
		s.use(nil, false, false)
		var err error
		rsp, err = gotpm.Create{ParentHandle: p.authHandle(s), InPublic: gotpm.New2B(tmpl)}.Execute(tp.c.tr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := keyfile.Encode(&b, newKeyFile(rsp.OutPublic, rsp.OutPrivate, parentID, true)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestAllowSign (issue 11, bug 6): a decrypt key that can also sign is
// refused unless the caller allows it, with an error naming allow-sign;
// allowed, it does ECDH.
func TestAllowSign(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	b := signDecryptKeyFile(t, tp)
	_, err := tp.LoadKey(ctx, b)
	if !errors.Is(err, ErrUnsupportedKey) || !strings.Contains(err.Error(), "allow-sign=true") {
		t.Fatalf("sign key without allow-sign: %v, want ErrUnsupportedKey naming allow-sign=true", err)
	}
	k, err := tp.LoadKey(ctx, b, WithAllowSign())
	if err != nil {
		t.Fatalf("with WithAllowSign: %v", err)
	}
	closeKey(t, k)
	if a := k.Attributes(); !a.Sign || !a.Decrypt || !a.FixedTPM {
		t.Errorf("attributes %+v", a)
	}
	checkECDH(t, ctx, k)
	// Our own keys cannot sign.
	if a := createKey(t, tp, ecdh.P256()).Attributes(); a.Sign || !a.Decrypt || !a.FixedTPM || !a.SensitiveDataOrigin {
		t.Errorf("created key's attributes %+v", a)
	}
	// A storage key is refused even so.
	var srk *parent
	if _, err := tp.underSRK(ctx, func(_ *session, p *parent) error { srk = p; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := checkPublic(&srk.pub, true); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("SRK with allow-sign: %v", err)
	}
}
