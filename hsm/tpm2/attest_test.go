package tpm2

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"

	gotpm "github.com/google/go-tpm/tpm2"

	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// makeCredential is the verifier's TPM2_MakeCredential, in software.
func makeCredential(t *testing.T, ekPublic, akPublic, secret []byte) (blob, enc []byte) {
	t.Helper()
	ekPub, err := gotpm.Unmarshal[gotpm.TPMTPublic](ekPublic)
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := gotpm.Unmarshal[gotpm.TPMTPublic](akPublic)
	if err != nil {
		t.Fatal(err)
	}
	name, err := gotpm.ObjectName(akPub)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := gotpm.ImportEncapsulationKey(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	blob, enc, err = gotpm.CreateCredential(rand.Reader, ek, name.Buffer, secret)
	if err != nil {
		t.Fatal(err)
	}
	return blob, enc
}

func TestAttestationProver(t *testing.T) {
	sw := testenv.StartSWTPM(t, testenv.SWTPMEKCert(""))
	tp := openTPM(t, sw)
	ctx := testCtx(t)

	e, err := tp.Endorsement(ctx)
	if err != nil {
		t.Fatalf("Endorsement: %v", err)
	}
	if e.Kind != "RSA 2048" || e.CertIndex != EKCertIndexRSA2048 {
		t.Fatalf("EK %s at 0x%08x, want swtpm's RSA 2048 at 0x01c00002", e.Kind, e.CertIndex)
	}
	if _, err := x509.ParseCertificate(e.Certificate); err != nil {
		t.Fatalf("EK certificate: %v", err)
	}
	ak1, err := tp.AttestationKey(ctx)
	if err != nil {
		t.Fatalf("AttestationKey: %v", err)
	}
	ak2, err := tp.AttestationKey(ctx)
	if err != nil || !bytes.Equal(ak1, ak2) {
		t.Fatalf("the AK is not derived again identically: %v", err)
	}

	k := createKey(t, tp, ecdh.P256())
	cert, err := k.Certify(ctx, []byte("qualifying data"))
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	if !bytes.Equal(cert.AKPublic, ak1) || !bytes.Equal(cert.KeyPublic, k.PublicArea()) {
		t.Fatal("Certify returned other public areas")
	}
	info, err := gotpm.Unmarshal[gotpm.TPMSAttest](cert.CertifyInfo)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(info.ExtraData.Buffer, []byte("qualifying data")) {
		t.Fatalf("extraData %q", info.ExtraData.Buffer)
	}
	checkECDH(t, ctx, k) // the key still works after the AK came and went

	secret := []byte("a fresh secret from the verifier")
	blob, enc := makeCredential(t, e.Public, ak1, secret)
	got, err := tp.ActivateCredential(ctx, e.Public, ak1, blob, enc)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("activated %q, want %q", got, secret)
	}
	// Tampered: the TPM refuses.
	blob[len(blob)-1] ^= 1
	if _, err := tp.ActivateCredential(ctx, e.Public, ak1, blob, enc); !errors.Is(err, ErrActivation) {
		t.Fatalf("tampered credential: %v, want ErrActivation", err)
	}

	// Another TPM (same CA) refuses this TPM's EK and AK before asking
	// its TPM, and a credential for its own EK but this AK's name fails
	// in the TPM.
	sw2 := testenv.StartSWTPM(t, testenv.SWTPMEKCert(""))
	tp2 := openTPM(t, sw2)
	e2, err := tp2.Endorsement(ctx)
	if err != nil {
		t.Fatal(err)
	}
	blob, enc = makeCredential(t, e.Public, ak1, secret)
	if _, err := tp2.ActivateCredential(ctx, e.Public, ak1, blob, enc); !errors.Is(err, ErrWrongTPM) {
		t.Fatalf("another TPM's EK: %v, want ErrWrongTPM", err)
	}
	ak2pub, err := tp2.AttestationKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ak2pub, ak1) {
		t.Fatal("two TPMs derived the same AK")
	}
	blob, enc = makeCredential(t, e2.Public, ak1, secret)
	if _, err := tp2.ActivateCredential(ctx, e2.Public, ak2pub, blob, enc); !errors.Is(err, ErrActivation) {
		t.Fatalf("credential for another AK's name: %v, want ErrActivation", err)
	}
}

func TestEndorsementWithoutCertificate(t *testing.T) {
	_, tp := startTPM(t)
	if _, err := tp.Endorsement(testCtx(t)); !errors.Is(err, ErrNoEKCertificate) {
		t.Fatalf("Endorsement on a TPM without EK certificates: %v, want ErrNoEKCertificate", err)
	}
}
