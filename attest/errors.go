package attest

import "errors"

// Sentinel errors. Every verification error wraps exactly one of them
// and names the field or check that failed, so that callers can test with
// errors.Is and people can read what went wrong.
var (
	// ErrMalformed: the evidence (or a challenge or answer) does not
	// parse: bad JSON, a repeated or unknown member, bad base64, a TPM
	// structure that does not decode or has bytes after it.
	ErrMalformed = errors.New("attest: malformed evidence")
	// ErrUnsupportedVersion: a document (evidence, an evidence set, a
	// challenge or an answer) is of another format version.
	ErrUnsupportedVersion = errors.New("attest: unsupported format version")
	// ErrEKCertificate: the EK certificate does not parse, is not an EK
	// certificate, has a critical extension the verifier does not
	// handle, or does not chain to the roots.
	ErrEKCertificate = errors.New("attest: EK certificate not trusted")
	// ErrEKPublic: the EK public area is not the certificate's key, or
	// not an endorsement key (a restricted decryption key bound to the
	// TPM).
	ErrEKPublic = errors.New("attest: EK public area does not match the EK certificate")
	// ErrAKPublic: the attestation key is not a restricted signing key
	// bound to the TPM (fixedTPM, fixedParent, sensitiveDataOrigin), or
	// not one this verifier accepts (ECDSA P-256 with SHA-256, no admin
	// policy).
	ErrAKPublic = errors.New("attest: unacceptable attestation key")
	// ErrCertifyInfo: the signed TPMS_ATTEST is not one the TPM made for
	// TPM2_Certify (magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_CERTIFY).
	ErrCertifyInfo = errors.New("attest: not a TPM2_Certify attestation")
	// ErrSignature: the AK's signature over the attestation does not
	// verify.
	ErrSignature = errors.New("attest: bad attestation signature")
	// ErrKeyName: the certified name is not the name of the key public
	// area in the evidence.
	ErrKeyName = errors.New("attest: certified name is not the key's")
	// ErrKeyAttributes: the key is not an unrestricted decryption key
	// bound to its TPM (fixedTPM, fixedParent), or can sign and the
	// caller did not allow it.
	ErrKeyAttributes = errors.New("attest: unacceptable key attributes")
	// ErrImportedKey: the key lacks sensitiveDataOrigin (and fixedTPM):
	// it was imported (TPM2_Import), so it existed outside the TPM and
	// may still. Refused unless Options.AllowImported.
	ErrImportedKey = errors.New("attest: the key was imported into the TPM, not generated in it")
	// ErrKeyConfig: the key configuration does not hold the key's public
	// key, or is not one of the published configurations.
	ErrKeyConfig = errors.New("attest: key configuration does not match the attested key")
	// ErrNonce: the evidence was made for another nonce (stale or
	// wrong), or its qualifying data does not bind the key
	// configuration and the nonce.
	ErrNonce = errors.New("attest: evidence not bound to the key configuration and nonce")
	// ErrActivation: the credential-activation answer is wrong: the AK
	// is not in the TPM that holds the EK.
	ErrActivation = errors.New("attest: credential activation failed: the AK is not proven to share a TPM with the EK")
)

// ErrNotAttestable: the key cannot be attested at all: it is not in a
// TPM (a PKCS#11 key, for which there is no standard attestation, or a
// software key), or the plugin serving it predates attestation. Every
// layer that reports it (keystore, plugins, the gateway's evidence
// container, attesthttp) wraps this one sentinel.
var ErrNotAttestable = errors.New("attest: the key cannot be attested")
