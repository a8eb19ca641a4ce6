// Package attest is the verifier of TPM key evidence: what a client
// checks to believe that a gateway's HPKE private key was generated in a
// TPM and cannot leave it, without taking the operator's word for it.
// It does not depend on a TPM; the prover's side is package
// attest/tpm2attest (over hsm/tpm2).
//
// # The evidence format, version 1
//
// One JSON object (media type [MediaType]); binary members are standard
// padded base64 of TPM 2.0 structures in their TPM encoding (Part 2) or
// of X.509 DER. It follows the shape of WebAuthn's "tpm" attestation
// statement (certInfo, pubArea, sig) with the EK certificate in place of
// an AK certificate, and go-attestation's split of EK, AK and
// certification; in RATS terms it is Evidence, the EK certificate an
// Endorsement, the published key configuration the Reference Value.
//
//	{
//	  "format":     "twoway-hsm/tpm2-key-evidence",
//	  "version":    1,
//	  "key_config": RFC 9458 KeyConfig of the key (key id, KEM, public key, suites),
//	  "nonce":      the verifier's nonce (absent: none),
//	  "ek_cert":    EK certificate (DER), from NV 0x01c0000a (ECC P-256) or 0x01c00002 (RSA 2048),
//	  "ek_chain":   [intermediate certificates (DER)] (optional, untrusted),
//	  "ek_public":  TPMT_PUBLIC of the EK (a TCG default template, L-1 or L-2,
//	                with the certificate's key at the template's full width),
//	  "ak_public":  TPMT_PUBLIC of the AK (restricted ECDSA P-256 signing key,
//	                a primary of the endorsement hierarchy),
//	  "key_public": TPMT_PUBLIC of the HPKE key,
//	  "cert_info":  TPMS_ATTEST from TPM2_Certify(key, AK, qualifyingData),
//	  "signature":  TPMT_SIGNATURE by the AK over cert_info
//	}
//
// qualifyingData is [QualifyingData](key_config, nonce): SHA-256 over a
// domain-separation label, then the key configuration and the nonce, each
// with a 2-byte length. A verifier refuses another version, and parses
// strictly (ParseEvidence): no repeated or unknown member, nothing after
// a TPM structure.
//
// # The gateway's evidence container, version 1
//
// A twoway-hsm gateway serves its keys' evidence next to the key
// configuration, at GET /.well-known/ohttp-gateway/evidence (media type
// [EvidenceSetMediaType]; the server is gateway.EvidenceHandler): one
// JSON object with one entry per key the gateway publishes, by key id:
//
//	{
//	  "format":  "twoway-hsm/gateway-evidence",
//	  "version": 1,
//	  "nonce":   the client's nonce (absent: the cached evidence, made for none),
//	  "keys": [
//	    {"key_id": 1, "evidence": { an evidence document, as above }},
//	    {"key_id": 2, "not_attestable": true, "problem": "a pkcs11 key: PKCS#11 defines no key attestation ..."},
//	    {"key_id": 3, "problem": "the evidence could not be collected: ..."}
//	  ]
//	}
//
// Each entry has either "evidence" (for that key id's configuration, as
// published, and for the container's nonce) or a "problem"; with
// "not_attestable" the key cannot be attested at all (PKCS#11, soft),
// without it the TPM failed for the moment. [ParseEvidenceSet] reads it
// as strictly as ParseEvidence reads evidence.
//
// Without a nonce the evidence is what the gateway collected at its
// start (or last reload) and caches: it shows where the key lives but
// not that this is fresh. GET .../evidence?nonce=HEX (1 to 64 bytes)
// returns evidence the TPMs made for the client's nonce, and POST of a
// challenge ([MakeChallenge], application/json) to
// /.well-known/ohttp-gateway/evidence/activate returns the TPM's
// [Answer]; both make the TPM work and are rate-limited (429 with
// Retry-After). Package attest/attesthttp does all of it for a client:
// attesthttp.Verify.
//
// # What is verified
//
// [Verify] checks the chain from the EK certificate to the manufacturers'
// roots, the EK public area, the AK, the signature, the certified name,
// the key's attributes, the key configuration and the nonce (see its
// documentation). That the AK is in the EK's TPM is proven only by
// credential activation, a round trip with that TPM: [MakeChallenge],
// the prover's TPM2_ActivateCredential, [CheckActivation]. The answer
// ({"version":1,"proof":BASE64}) holds [ActivationProof] of the
// credential, never the credential: the AK's template is a well-known
// one, and the TPM would decrypt for whoever asks any credential made for
// it. A prover activates only credentials of [ActivationSecretSize]
// bytes.
//
//	ev, err := attest.ParseEvidence(body)
//	res, err := attest.Verify(ev, attest.Options{Roots: tpmRoots, KeyConfigs: published, Nonce: nonce})
//	ch, secret, err := attest.MakeChallenge(ev)
//	ans := ... // the gateway's answer to ch (POST .../evidence/activate)
//	err = attest.CheckActivation(secret, ans)
//	// res.KeyID() is attested
package attest
