package keystore

import (
	"context"
	"fmt"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Attester is an opened Key that can prove it lives in hardware (package
// attest): TPM keys (keystore/tpm2store). Both methods only prove:
// neither exports, imports, provisions or stores anything. Keys of other
// stores do not implement it; [AttesterOf] says why.
type Attester interface {
	Key
	// Attest returns the key's evidence under its key configuration cfg
	// (whose KEM and public key must be the key's) for nonce (nil for
	// none, at most attest.MaxNonceSize bytes).
	Attest(ctx context.Context, cfg twoway.KeyConfig, nonce []byte) (*attest.Evidence, error)
	// Activate answers a credential-activation challenge with the
	// hardware that holds the key; it refuses a challenge made for
	// another EK or AK, or for a credential of a size
	// attest.MakeChallenge does not make, and answers with
	// attest.ActivationProof of the credential, never the credential.
	Activate(ctx context.Context, c *attest.Challenge) (*attest.Answer, error)
}

// AttesterOf returns k as an Attester, or an error wrapping
// attest.ErrNotAttestable that says why a key of the backend scheme
// cannot be attested.
func AttesterOf(k Key, scheme string) (Attester, error) {
	if a, ok := k.(Attester); ok {
		return a, nil
	}
	why := "its key store has no key attestation"
	switch scheme {
	case "pkcs11":
		why = "PKCS#11 defines no key attestation (vendors offer their own, e.g. YubiHSM attestation certificates)"
	case "soft":
		why = "a software key is in the plugin's memory, not in hardware"
	}
	return nil, fmt.Errorf("%w: a %s key: %s", attest.ErrNotAttestable, scheme, why)
}
