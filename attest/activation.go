package attest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"

	gotpm "github.com/google/go-tpm/tpm2"
)

// Credential activation (TPM 2.0 Part 1, section 24) proves that the AK
// lives in the TPM that holds the EK: the verifier encrypts a fresh
// secret to the EK, bound to the AK's name (MakeChallenge, which is
// TPM2_MakeCredential in software, go-tpm's CreateCredential); the TPM
// releases it (TPM2_ActivateCredential) only when it holds both the EK's
// private key and an object with that name; the verifier compares what
// comes back (CheckActivation). The prover's side is
// hsm/tpm2.TPM.ActivateCredential, or tpm2attest.Activate, which need the
// TPM itself. A remote verifier sends the challenge to the gateway (POST
// of the challenge to /.well-known/ohttp-gateway/evidence/activate, see
// package attest/attesthttp), whose plugin answers with the key's TPM; a
// verifier on the TPM's machine runs it directly (twoway-hsm attest
// verify --activate). ParseChallenge and ParseAnswer read the two
// messages strictly, as they travel.
//
// The prover never answers with the credential itself: TPM2_ActivateCredential
// decrypts any credential made for the EK and the AK's name, and the AK's
// template is a well-known one (go-tpm-tools' AKTemplateECC), whose AK
// other software on the machine may have credentials made for. Whoever
// can send challenges (the gateway's process, a client) would otherwise
// hold a decryption oracle for them. The prover releases only
// ActivationProof of a credential of the size MakeChallenge makes, a MAC
// keyed with it that is useless to any other protocol; the verifier,
// which knows the credential, computes the same.

// MaxChallengeSize bounds a challenge document, MaxAnswerSize an answer
// (an RSA 2048 EK's challenge is about 1 KiB).
const (
	MaxChallengeSize = 8 << 10
	MaxAnswerSize    = 1 << 10
)

// ActivationVersion is the version of Challenge and Answer.
const ActivationVersion = 1

// Challenge is what the verifier sends the prover: the public areas it
// made the credential for, and the credential. It is safe to send in the
// clear: only the EK's TPM can open it.
type Challenge struct {
	Version int `json:"version"`
	// EKPublic and AKPublic are the evidence's EK and AK public areas
	// (TPMT_PUBLIC); the prover refuses a challenge for others.
	EKPublic []byte `json:"ek_public"`
	AKPublic []byte `json:"ak_public"`
	// CredentialBlob (a TPM2B_ID_OBJECT's buffer) and EncryptedSecret (a
	// TPM2B_ENCRYPTED_SECRET's buffer) are TPM2_MakeCredential's output.
	CredentialBlob  []byte `json:"credential_blob"`
	EncryptedSecret []byte `json:"encrypted_secret"`
}

// Answer is the prover's reply: the proof that the TPM released the
// credential, ActivationProof of it (never the credential itself).
type Answer struct {
	Version int    `json:"version"`
	Proof   []byte `json:"proof"`
}

// Secret is the verifier's side of one challenge, kept until the answer
// comes. It is single-use.
type Secret struct {
	value []byte
	used  bool
}

// ActivationSecretSize is the size of the credential MakeChallenge
// makes; a prover releases nothing for a credential of another size.
const ActivationSecretSize = 32

// credentialBlobSize is the size of the credential blob MakeChallenge
// makes for an EK of the accepted templates (SHA-256 name algorithm):
// the integrity HMAC (a TPM2B_DIGEST of 32 bytes) and the encrypted
// credential (a TPM2B_DIGEST of ActivationSecretSize bytes, encrypted in
// CFB mode, which keeps its size).
const credentialBlobSize = 2 + sha256.Size + 2 + ActivationSecretSize

// ActivationProofLabel is the MAC input of ActivationProof.
const ActivationProofLabel = "twoway-hsm tpm2 credential activation proof v1"

// ActivationProof is what a prover answers for a credential the TPM
// released: HMAC-SHA256 keyed with the credential over
// ActivationProofLabel. It proves that the prover holds the credential
// without revealing it.
func ActivationProof(credential []byte) []byte {
	m := hmac.New(sha256.New, credential)
	m.Write([]byte(ActivationProofLabel))
	return m.Sum(nil)
}

// MakeChallenge makes a credential-activation challenge for the evidence's
// EK and AK. Call it after Verify has accepted the evidence: it checks
// again that the EK public area is the EK certificate's key and that the
// AK is acceptable, but not the certificate's chain.
func MakeChallenge(ev *Evidence) (*Challenge, *Secret, error) {
	return makeChallenge(ev, rand.Reader)
}

func makeChallenge(ev *Evidence, rnd io.Reader) (*Challenge, *Secret, error) {
	if ev == nil {
		return nil, nil, fmt.Errorf("%w: no evidence", ErrMalformed)
	}
	cert, err := parseCert(ev.EKCert)
	if err != nil {
		return nil, nil, err
	}
	ekPub, err := checkEKPublic(ev.EKPublic, cert.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	akPub, err := decode[gotpm.TPMTPublic](ev.AKPublic, "ak_public")
	if err != nil {
		return nil, nil, err
	}
	if _, err := checkAKPublic(akPub); err != nil {
		return nil, nil, err
	}
	name, err := gotpm.ObjectName(akPub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ak_public: %v", ErrAKPublic, err)
	}
	ek, err := gotpm.ImportEncapsulationKey(ekPub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ek_public cannot protect a credential: %v", ErrEKPublic, err)
	}
	secret := make([]byte, ActivationSecretSize)
	if _, err := io.ReadFull(rnd, secret); err != nil {
		return nil, nil, err
	}
	blob, enc, err := gotpm.CreateCredential(rnd, ek, name.Buffer, secret)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: making the credential: %w", err)
	}
	return &Challenge{
			Version: ActivationVersion, EKPublic: bytes.Clone(ev.EKPublic), AKPublic: bytes.Clone(ev.AKPublic),
			CredentialBlob: blob, EncryptedSecret: enc,
		},
		&Secret{value: secret}, nil
}

// CheckActivation checks the prover's answer to the challenge that made
// s. A Secret answers once: a second call fails. Errors wrap
// ErrActivation.
func CheckActivation(s *Secret, a *Answer) error {
	if s == nil || s.used {
		return fmt.Errorf("%w: no secret, or one already used", ErrActivation)
	}
	s.used = true
	defer clear(s.value)
	if a == nil || a.Version != ActivationVersion {
		return fmt.Errorf("%w: no answer of version %d", ErrActivation, ActivationVersion)
	}
	if subtle.ConstantTimeCompare(a.Proof, ActivationProof(s.value)) != 1 {
		return fmt.Errorf("%w: the answer is not the credential (another TPM answered, or the AK is not in the EK's TPM)", ErrActivation)
	}
	return nil
}

// ParseChallenge parses a challenge strictly (as ParseEvidence does
// evidence): for the prover, which must not be led astray by a document
// two readers read differently.
func ParseChallenge(b []byte) (*Challenge, error) {
	if len(b) > MaxChallengeSize {
		return nil, fmt.Errorf("%w: challenge: %d bytes, more than %d", ErrMalformed, len(b), MaxChallengeSize)
	}
	var w struct {
		Version         int `json:"version"`
		EKPublic        b64 `json:"ek_public"`
		AKPublic        b64 `json:"ak_public"`
		CredentialBlob  b64 `json:"credential_blob"`
		EncryptedSecret b64 `json:"encrypted_secret"`
	}
	if err := strictDecode(b, "", ActivationVersion, &w); err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	c := &Challenge{Version: w.Version, EKPublic: w.EKPublic, AKPublic: w.AKPublic, CredentialBlob: w.CredentialBlob, EncryptedSecret: w.EncryptedSecret}
	for _, f := range []struct {
		name string
		b    []byte
	}{{"ek_public", c.EKPublic}, {"ak_public", c.AKPublic}, {"credential_blob", c.CredentialBlob}, {"encrypted_secret", c.EncryptedSecret}} {
		if len(f.b) == 0 || len(f.b) > maxField {
			return nil, fmt.Errorf("%w: challenge: %s: %d bytes", ErrMalformed, f.name, len(f.b))
		}
	}
	if len(c.CredentialBlob) != credentialBlobSize {
		// Not a credential MakeChallenge made: the prover would decrypt
		// someone else's.
		return nil, fmt.Errorf("%w: challenge: credential_blob of %d bytes, want %d (a %d-byte credential for a SHA-256 EK)",
			ErrMalformed, len(c.CredentialBlob), credentialBlobSize, ActivationSecretSize)
	}
	return c, nil
}

// ParseAnswer parses an answer strictly.
func ParseAnswer(b []byte) (*Answer, error) {
	if len(b) > MaxAnswerSize {
		return nil, fmt.Errorf("%w: answer: %d bytes, more than %d", ErrMalformed, len(b), MaxAnswerSize)
	}
	var w struct {
		Version int `json:"version"`
		Proof   b64 `json:"proof"`
	}
	if err := strictDecode(b, "", ActivationVersion, &w); err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	if len(w.Proof) != sha256.Size {
		return nil, fmt.Errorf("%w: answer: proof of %d bytes, want %d", ErrMalformed, len(w.Proof), sha256.Size)
	}
	return &Answer{Version: w.Version, Proof: w.Proof}, nil
}
