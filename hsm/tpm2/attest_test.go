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

// attestationKey returns the public area of the TPM's attestation key.
func attestationKey(t *testing.T, tp *TPM) []byte {
	t.Helper()
	var pub []byte
	err := tp.c.do(testCtx(t), func() error {
		tp.c.makeRoom(nil, 1)
		ak, err := tp.c.createAK()
		if err != nil {
			return err
		}
		tp.c.flush(ak.handle)
		pub = gotpm.Marshal(*ak.pub)
		return nil
	})
	if err != nil {
		t.Fatalf("attestation key: %v", err)
	}
	return pub
}

func TestAttestationProver(t *testing.T) {
	sw := testenv.StartSWTPM(t, testenv.SWTPMEKCert(""))
	tp := openTPM(t, sw)
	ctx := testCtx(t)

	e, err := tp.Endorsement(ctx)
	if err != nil {
		t.Fatalf("Endorsement: %v", err)
	}
	if e.Kind != "RSA 2048" || e.CertIndex != ekCertIndexRSA2048 {
		t.Fatalf("EK %s at 0x%08x, want swtpm's RSA 2048 at 0x01c00002", e.Kind, e.CertIndex)
	}
	if _, err := x509.ParseCertificate(e.Certificate); err != nil {
		t.Fatalf("EK certificate: %v", err)
	}
	// Read once per connection: the second call asks the TPM nothing (it
	// returns what the connection kept, marked here) and returns its own
	// copy.
	if tp.c.endorsement == nil {
		t.Fatal("the endorsement is not kept on the connection")
	}
	tp.c.endorsement.Kind = "kept"
	ekCert := bytes.Clone(e.Certificate)
	e.Certificate[0] ^= 0xff
	again, err := tp.Endorsement(ctx)
	if err != nil {
		t.Fatalf("Endorsement again: %v", err)
	}
	if again.Kind != "kept" {
		t.Fatalf("Endorsement again: kind %q: read from the TPM again, not the kept one", again.Kind)
	}
	if !bytes.Equal(again.Certificate, ekCert) || !bytes.Equal(again.Public, e.Public) {
		t.Fatal("Endorsement again: another EK, or the caller's change leaked into the kept one")
	}
	tp.c.endorsement.Kind = e.Kind
	e.Certificate[0] ^= 0xff
	ak1 := attestationKey(t, tp)
	if ak2 := attestationKey(t, tp); !bytes.Equal(ak1, ak2) {
		t.Fatal("the AK is not derived again identically")
	}

	k := createKey(t, tp, ecdh.P256())
	cert, err := k.Certify(ctx, []byte("qualifying data"))
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	if !bytes.Equal(cert.AKPublic, ak1) || !bytes.Equal(cert.KeyPublic, k.pubArea) {
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
	// The ECC P-256 EK, which has no certificate on this swtpm: the EK is
	// picked by the template of the public area given, not from NV.
	var eccEK []byte
	if err := tp.c.do(ctx, func() error {
		p, err := tp.c.createPrimary(gotpm.TPMRHEndorsement, gotpm.ECCEKTemplate)
		if err != nil {
			return err
		}
		tp.c.flush(p.handle)
		eccEK = gotpm.Marshal(*p.pub)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eb, ee := makeCredential(t, eccEK, ak1, secret)
	if got, err := tp.ActivateCredential(ctx, eccEK, ak1, eb, ee); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("ActivateCredential with the ECC EK: %q, %v", got, err)
	}
	// Not an EK of a default template: refused before the TPM is asked.
	for name, pub := range map[string][]byte{"garbage": {1, 2, 3}, "the AK": ak1} {
		if _, err := tp.ActivateCredential(ctx, pub, ak1, blob, enc); !errors.Is(err, ErrWrongTPM) {
			t.Fatalf("EK public area %s: %v, want ErrWrongTPM", name, err)
		}
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
	ak2pub := attestationKey(t, tp2)
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
