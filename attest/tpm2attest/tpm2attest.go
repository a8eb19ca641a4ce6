// Package tpm2attest is the prover's side of package attest on a TPM
// (hsm/tpm2): it collects the evidence for a key and answers
// credential-activation challenges. Clients that only verify import
// attest alone, which does not depend on hsm/tpm2.
//
// Neither function exports, imports, provisions or stores anything: the
// attestation key is derived again from the endorsement hierarchy on
// every call, the EK certificate is read from NV (once per connection to
// the TPM, see tpm2.TPM.Endorsement), and the key is only certified.
package tpm2attest

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Collect makes the evidence for key under its key configuration cfg
// (whose KEM and public key must be the key's) and nonce (nil for none,
// at most attest.MaxNonceSize bytes). chain adds intermediate
// certificates (DER) of the EK certificate's issuer to those the TPM
// holds, for verifiers that lack them.
func Collect(ctx context.Context, key *tpm2.Key, cfg twoway.KeyConfig, nonce []byte, chain [][]byte) (*attest.Evidence, error) {
	if len(nonce) > attest.MaxNonceSize {
		return nil, fmt.Errorf("tpm2attest: nonce of %d bytes, more than %d", len(nonce), attest.MaxNonceSize)
	}
	if kem.ID(cfg.KEM) != key.KEM() || !bytes.Equal(cfg.PublicKey, key.PublicKeyBytes()) {
		return nil, fmt.Errorf("tpm2attest: key config %d is not this key's (KEM %v, public key %x)", cfg.KeyID, key.KEM(), key.PublicKeyBytes())
	}
	kc, err := cfg.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("tpm2attest: %w", err)
	}
	for i, c := range chain {
		if _, err := x509.ParseCertificate(c); err != nil {
			return nil, fmt.Errorf("tpm2attest: EK chain certificate %d: %w", i, err)
		}
	}
	t, err := key.TPM()
	if err != nil {
		return nil, err
	}
	defer t.Close()
	ek, err := t.Endorsement(ctx)
	if err != nil {
		return nil, err
	}
	if n := len(ek.Chain) + len(chain); n > attest.MaxEKChain { // before the TPM certifies
		return nil, fmt.Errorf("tpm2attest: %d EK chain certificates (%d from the TPM), more than evidence carries (%d)", n, len(ek.Chain), attest.MaxEKChain)
	}
	cert, err := key.Certify(ctx, attest.QualifyingData(kc, nonce))
	if err != nil {
		return nil, err
	}
	ev := &attest.Evidence{
		KeyConfig: kc,
		EKCert:    ek.Certificate,
		EKPublic:  ek.Public,
		AKPublic:  cert.AKPublic,
		KeyPublic: cert.KeyPublic,
		CertInfo:  cert.CertifyInfo,
		Signature: cert.Signature,
	}
	if len(nonce) > 0 {
		ev.Nonce = bytes.Clone(nonce)
	}
	ev.EKChain = append(append(ev.EKChain, ek.Chain...), chain...)
	return ev, nil
}

// Activate answers a credential-activation challenge with the TPM t
// (tpm2.TPM.ActivateCredential): the TPM releases the credential only if
// the challenge was made for its own EK and AK. The answer holds
// attest.ActivationProof of the credential, never the credential, and
// only for a credential of attest.ActivationSecretSize bytes.
func Activate(ctx context.Context, t *tpm2.TPM, c *attest.Challenge) (*attest.Answer, error) {
	if c == nil || c.Version != attest.ActivationVersion {
		return nil, fmt.Errorf("tpm2attest: %w: no challenge of version %d", attest.ErrUnsupportedVersion, attest.ActivationVersion)
	}
	secret, err := t.ActivateCredential(ctx, c.EKPublic, c.AKPublic, c.CredentialBlob, c.EncryptedSecret)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	if len(secret) != attest.ActivationSecretSize {
		// Not a credential attest.MakeChallenge made (another protocol's,
		// for the same well-known AK): it stays here.
		return nil, fmt.Errorf("tpm2attest: %w: a credential of %d bytes, not %d: not a challenge from attest.MakeChallenge",
			tpm2.ErrActivation, len(secret), attest.ActivationSecretSize)
	}
	// The proof, never the credential: whoever sent the challenge learns
	// nothing it could use elsewhere.
	return &attest.Answer{Version: attest.ActivationVersion, Proof: attest.ActivationProof(secret)}, nil
}
