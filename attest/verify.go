package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	gotpm "github.com/google/go-tpm/tpm2"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Options say what the verifier trusts and expects.
type Options struct {
	// Roots are the TPM manufacturers' root certificates the EK
	// certificate must chain to. Required.
	Roots *x509.CertPool
	// Intermediates are extra untrusted intermediate certificates (the
	// manufacturer's issuing CAs), besides those in the evidence.
	Intermediates *x509.CertPool
	// KeyConfigs are the published key configurations (what the gateway
	// serves at /.well-known/ohttp-gateway). The evidence's key
	// configuration must be one of them, byte for byte. When nil, the
	// evidence's own key configuration is reported and
	// Result.KeyConfigPublished is false: the caller must then compare
	// it with what it uses.
	KeyConfigs []twoway.KeyConfig
	// Nonce is the nonce the verifier sent for fresh evidence. When set,
	// the evidence must have been made for it; when nil, the evidence
	// must carry no nonce unless AnyNonce is set (it is then not known
	// to be fresh).
	Nonce []byte
	// AnyNonce accepts evidence made for a nonce when Nonce is nil (the
	// gateway's published evidence, made for its own nonce).
	AnyNonce bool
	// AllowImported accepts a key imported into the TPM (no
	// sensitiveDataOrigin, no fixedTPM): it existed outside the TPM.
	AllowImported bool
	// AllowSign accepts a key that can sign as well as decrypt.
	AllowSign bool
	// Time is when the certificates must be valid; zero means now.
	Time time.Time
}

// Attributes are the HPKE key's object attributes (TPMA_OBJECT) as the
// TPM certified them.
type Attributes struct {
	FixedTPM            bool `json:"fixed_tpm"`
	FixedParent         bool `json:"fixed_parent"`
	SensitiveDataOrigin bool `json:"sensitive_data_origin"`
	UserWithAuth        bool `json:"user_with_auth"`
	AdminWithPolicy     bool `json:"admin_with_policy"`
	NoDA                bool `json:"no_da"`
	Restricted          bool `json:"restricted"`
	Decrypt             bool `json:"decrypt"`
	Sign                bool `json:"sign"`
}

// EKInfo describes the EK certificate that was verified.
type EKInfo struct {
	// Kind is "RSA 2048", "ECC P-256", ...
	Kind string `json:"kind"`
	// Issuer and Subject are the certificate's, as RFC 2253 strings.
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Serial  string `json:"serial"`
	// Manufacturer, Model and Version are the TPM's, from the
	// certificate's subject alternative name (TCG attributes).
	Manufacturer string `json:"tpm_manufacturer,omitempty"`
	Model        string `json:"tpm_model,omitempty"`
	Version      string `json:"tpm_version,omitempty"`
	// Chain is the verified chain, EK certificate first, root last.
	Chain []*x509.Certificate `json:"-"`
}

// Result is what Verify verified.
type Result struct {
	// KeyConfig is the attested key's configuration: key id, KEM,
	// public key, suites.
	KeyConfig twoway.KeyConfig `json:"-"`
	// KeyConfigPublished: KeyConfig is one of Options.KeyConfigs.
	KeyConfigPublished bool `json:"key_config_published"`
	// Nonce is the nonce the evidence is bound to (nil for none);
	// NonceChecked says whether it is the one in Options.Nonce.
	Nonce        []byte `json:"nonce,omitempty"`
	NonceChecked bool   `json:"nonce_checked"`
	// EK is the verified EK certificate.
	EK EKInfo `json:"ek"`
	// AKName is the attestation key's name (nameAlg || digest), what
	// credential activation proves to be in the EK's TPM.
	AKName []byte `json:"ak_name"`
	// KeyName is the HPKE key's name.
	KeyName []byte `json:"key_name"`
	// Attributes are the HPKE key's; Imported is !SensitiveDataOrigin.
	Attributes Attributes `json:"attributes"`
	Imported   bool       `json:"imported"`
	// FirmwareVersion is the TPM's firmware version, from its attestation.
	FirmwareVersion uint64 `json:"firmware_version"`
}

// KeyID returns the attested key's key id.
func (r *Result) KeyID() byte { return r.KeyConfig.KeyID }

// Verify checks the evidence for one key and returns what it attests. It
// checks, in order, each failure an error that wraps the named sentinel:
//
//   - the EK certificate chains to opts.Roots (ErrEKCertificate), with
//     the extensions EK certificates carry handled deliberately (see
//     VerifyEKCertificate);
//   - the EK public area is, byte for byte, the EK that a TCG default
//     template gives with the certificate's public key (ErrEKPublic);
//   - the AK is a restricted ECDSA P-256 signing key with fixedTPM,
//     fixedParent and sensitiveDataOrigin, without an admin policy
//     (ErrAKPublic);
//   - the attestation is the TPM's own TPM2_Certify structure
//     (ErrCertifyInfo) and the AK signed it, R and S encoded as a TPM
//     does (ErrSignature). ECDSA's other signature (R, n-S) verifies too,
//     and TPMs do not normalise S: the signature is the one field that
//     other bytes may replace (cert_info, which it signs, is not);
//   - the certified name is the name of the key public area (ErrKeyName);
//   - the key is an unrestricted decryption key with fixedParent and,
//     unless allowed, not a signing key (ErrKeyAttributes); one without
//     sensitiveDataOrigin or fixedTPM was imported (ErrImportedKey,
//     unless opts.AllowImported);
//   - the key configuration holds the key's public key and KEM and is
//     one of opts.KeyConfigs (ErrKeyConfig);
//   - the evidence is for opts.Nonce, and the qualifying data is
//     QualifyingData(key configuration, nonce) (ErrNonce).
//
// What Verify cannot check alone is that the AK lives in the TPM of the
// EK: the AK's public area says fixedTPM, but only the TPM holding the EK
// can prove it, by credential activation (MakeChallenge, CheckActivation).
// Until that is done, a Result says only that some TPM made the key, and
// that some TPM with a valid EK certificate exists.
func Verify(ev *Evidence, opts Options) (*Result, error) {
	if ev == nil {
		return nil, fmt.Errorf("%w: no evidence", ErrMalformed)
	}
	if opts.Roots == nil {
		return nil, fmt.Errorf("%w: no roots given", ErrEKCertificate)
	}
	r := &Result{}

	// The EK.
	ekInfo, ekKey, err := VerifyEKCertificate(ev.EKCert, ev.EKChain, opts)
	if err != nil {
		return nil, err
	}
	r.EK = *ekInfo
	if _, err := checkEKPublic(ev.EKPublic, ekKey); err != nil {
		return nil, err
	}

	// The AK and its signature.
	akPub, err := decode[gotpm.TPMTPublic](ev.AKPublic, "ak_public")
	if err != nil {
		return nil, err
	}
	akKey, err := checkAKPublic(akPub)
	if err != nil {
		return nil, err
	}
	akName, err := gotpm.ObjectName(akPub)
	if err != nil {
		return nil, fmt.Errorf("%w: ak_public: %v", ErrAKPublic, err)
	}
	r.AKName = akName.Buffer
	info, err := decode[gotpm.TPMSAttest](ev.CertInfo, "cert_info")
	if err != nil {
		return nil, err
	}
	if err := checkSignature(akKey, ev.CertInfo, ev.Signature); err != nil {
		return nil, err
	}
	if info.Magic != gotpm.TPMGeneratedValue {
		return nil, fmt.Errorf("%w: cert_info: magic 0x%08x, not TPM_GENERATED_VALUE", ErrCertifyInfo, uint32(info.Magic))
	}
	if want := akQualifiedName(akName.Buffer); !bytes.Equal(info.QualifiedSigner.Buffer, want) {
		// The signed structure names its signer: this binds every bit of
		// ak_public (through its name) to the signature.
		return nil, fmt.Errorf("%w: cert_info names the signer %x, not ak_public as a primary key of the endorsement hierarchy (%x)", ErrAKPublic, info.QualifiedSigner.Buffer, want)
	}
	if info.Type != gotpm.TPMSTAttestCertify {
		return nil, fmt.Errorf("%w: cert_info: type 0x%04x, not TPM_ST_ATTEST_CERTIFY", ErrCertifyInfo, uint16(info.Type))
	}
	certified, err := info.Attested.Certify()
	if err != nil {
		return nil, fmt.Errorf("%w: cert_info: %v", ErrCertifyInfo, err)
	}
	r.FirmwareVersion = info.FirmwareVersion

	// The key.
	keyPub, err := decode[gotpm.TPMTPublic](ev.KeyPublic, "key_public")
	if err != nil {
		return nil, err
	}
	keyName, err := gotpm.ObjectName(keyPub)
	if err != nil {
		return nil, fmt.Errorf("%w: key_public: %v", ErrKeyName, err)
	}
	r.KeyName = keyName.Buffer
	if !bytes.Equal(certified.Name.Buffer, keyName.Buffer) {
		return nil, fmt.Errorf("%w: the AK certified the name %x, key_public's name is %x", ErrKeyName, certified.Name.Buffer, keyName.Buffer)
	}
	a := keyPub.ObjectAttributes
	r.Attributes = Attributes{
		FixedTPM: a.FixedTPM, FixedParent: a.FixedParent, SensitiveDataOrigin: a.SensitiveDataOrigin,
		UserWithAuth: a.UserWithAuth, AdminWithPolicy: a.AdminWithPolicy, NoDA: a.NoDA,
		Restricted: a.Restricted, Decrypt: a.Decrypt, Sign: a.SignEncrypt,
	}
	r.Imported = !a.SensitiveDataOrigin || !a.FixedTPM
	keyPoint, keyKEM, err := checkKeyPublic(keyPub, opts)
	if err != nil {
		return nil, err
	}

	// The key configuration.
	var kc twoway.KeyConfig
	if err := kc.UnmarshalBinary(ev.KeyConfig); err != nil {
		return nil, fmt.Errorf("%w: key_config: %w", ErrMalformed, err)
	}
	r.KeyConfig = kc
	if kem.ID(kc.KEM) != keyKEM {
		return nil, fmt.Errorf("%w: key_config names KEM %v, the TPM key is a %v key", ErrKeyConfig, kem.ID(kc.KEM), keyKEM)
	}
	if !bytes.Equal(kc.PublicKey, keyPoint) {
		return nil, fmt.Errorf("%w: key_config's public key %x is not the TPM key's %x", ErrKeyConfig, kc.PublicKey, keyPoint)
	}
	if opts.KeyConfigs != nil {
		for _, pc := range opts.KeyConfigs {
			b, err := pc.MarshalBinary()
			if err == nil && bytes.Equal(b, ev.KeyConfig) {
				r.KeyConfigPublished = true
				break
			}
		}
		if !r.KeyConfigPublished {
			return nil, fmt.Errorf("%w: key id %d with public key %x is not among the %d published key configurations (or its KEM or suites differ)",
				ErrKeyConfig, kc.KeyID, kc.PublicKey, len(opts.KeyConfigs))
		}
	}

	// The nonce and the qualifying data.
	switch {
	case opts.Nonce != nil && !bytes.Equal(ev.Nonce, opts.Nonce):
		if ev.Nonce == nil {
			return nil, fmt.Errorf("%w: the evidence carries no nonce, want %x", ErrNonce, opts.Nonce)
		}
		return nil, fmt.Errorf("%w: the evidence is for nonce %x, want %x (stale or for another verifier)", ErrNonce, ev.Nonce, opts.Nonce)
	case opts.Nonce == nil && ev.Nonce != nil && !opts.AnyNonce:
		return nil, fmt.Errorf("%w: the evidence is for nonce %x and no nonce was expected", ErrNonce, ev.Nonce)
	}
	r.Nonce, r.NonceChecked = ev.Nonce, opts.Nonce != nil
	if want := QualifyingData(ev.KeyConfig, ev.Nonce); !bytes.Equal(info.ExtraData.Buffer, want) {
		return nil, fmt.Errorf("%w: cert_info's qualifying data %x is not SHA-256 over the key configuration and nonce (%x)", ErrNonce, info.ExtraData.Buffer, want)
	}
	return r, nil
}

// akQualifiedName is the qualified name of a primary key of the
// endorsement hierarchy with the given name (TPM 2.0 Part 1, 16.6):
// nameAlg || SHA-256(TPM_RH_ENDORSEMENT || name).
func akQualifiedName(name []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0x40, 0, 0, 0x0b})
	h.Write(name)
	return append([]byte{0, byte(gotpm.TPMAlgSHA256)}, h.Sum(nil)...)
}

// decode unmarshals a TPM structure and insists that it re-encodes to
// exactly the bytes given: nothing after it, nothing non-canonical.
func decode[T gotpm.Marshallable, P interface {
	*T
	gotpm.Unmarshallable
}](b []byte, field string) (out *T, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("%w: %s: does not decode: %v", ErrMalformed, field, p)
		}
	}()
	v, err := gotpm.Unmarshal[T, P](b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, field, err)
	}
	if !bytes.Equal(gotpm.Marshal(*v), b) {
		return nil, fmt.Errorf("%w: %s: bytes after the structure, or not in canonical form", ErrMalformed, field)
	}
	return v, nil
}

// ekTemplates are the EK templates whose EKs the verifier accepts: the
// TCG EK Credential Profile's default templates L-1 (RSA 2048) and L-2
// (ECC P-256), the EKs the low-range certificate indices certify. Their
// policy is PolicySecret(TPM_RH_ENDORSEMENT) and their symmetric
// algorithm protects the credential; an EK public area that differs
// from them anywhere but in its key is refused, so that nothing in it
// goes unchecked.
var ekTemplates = []struct {
	name string
	tmpl gotpm.TPMTPublic
}{
	{"TCG default EK template L-1 (RSA 2048)", gotpm.RSAEKTemplate},
	{"TCG default EK template L-2 (ECC P-256)", gotpm.ECCEKTemplate},
}

// checkEKPublic checks that raw, the evidence's ek_public, is byte for
// byte the public area of an EK from a default template holding the
// certificate's key: the template with its unique field set to the key at
// the template's full width (the RSA modulus in keyBits/8 bytes, each ECC
// coordinate in the curve's size), as the TPM derives it. Comparing bytes,
// not key values, leaves no other encoding of the same key (a modulus
// with a leading zero byte, say) to pass. It returns the decoded area.
func checkEKPublic(raw []byte, certKey crypto.PublicKey) (*gotpm.TPMTPublic, error) {
	pub, err := decode[gotpm.TPMTPublic](raw, "ek_public")
	if err != nil {
		return nil, err
	}
	sameTemplate := false
	for _, t := range ekTemplates {
		if want, ok := ekPublicFor(t.tmpl, certKey); ok && bytes.Equal(gotpm.Marshal(want), raw) {
			return pub, nil
		}
		a, b := *pub, t.tmpl
		a.Unique, b.Unique = gotpm.TPMUPublicID{}, gotpm.TPMUPublicID{}
		sameTemplate = sameTemplate || bytes.Equal(gotpm.Marshal(a), gotpm.Marshal(b))
	}
	if !sameTemplate {
		return nil, fmt.Errorf("%w: ek_public is not an EK from a TCG default template (L-1 RSA 2048, L-2 ECC P-256): attributes, policy or parameters differ", ErrEKPublic)
	}
	return nil, fmt.Errorf("%w: ek_public's unique field is not the EK certificate's key at the template's full width", ErrEKPublic)
}

// ekPublicFor returns the public area of the EK that the template tmpl
// gives with the key certKey, or false when the key is not of the
// template's type, size, curve or exponent.
func ekPublicFor(tmpl gotpm.TPMTPublic, certKey crypto.PublicKey) (gotpm.TPMTPublic, bool) {
	switch k := certKey.(type) {
	case *rsa.PublicKey:
		parms, err := tmpl.Parameters.RSADetail()
		if tmpl.Type != gotpm.TPMAlgRSA || err != nil {
			return tmpl, false
		}
		e, size := int(parms.Exponent), int(parms.KeyBits)/8
		if e == 0 {
			e = 65537 // the TPM's default exponent
		}
		if k.E != e || k.N.BitLen() != int(parms.KeyBits) {
			return tmpl, false
		}
		tmpl.Unique = gotpm.NewTPMUPublicID(gotpm.TPMAlgRSA, &gotpm.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, size))})
		return tmpl, true
	case *ecdsa.PublicKey:
		parms, err := tmpl.Parameters.ECCDetail()
		if tmpl.Type != gotpm.TPMAlgECC || err != nil || parms.CurveID != gotpm.TPMECCNistP256 || k.Curve != elliptic.P256() {
			return tmpl, false
		}
		p, err := k.ECDH()
		if err != nil {
			return tmpl, false
		}
		b := p.Bytes() // 0x04 || X || Y, each at full width
		n := (len(b) - 1) / 2
		tmpl.Unique = gotpm.NewTPMUPublicID(gotpm.TPMAlgECC, &gotpm.TPMSECCPoint{
			X: gotpm.TPM2BECCParameter{Buffer: b[1 : 1+n]},
			Y: gotpm.TPM2BECCParameter{Buffer: b[1+n:]},
		})
		return tmpl, true
	}
	return tmpl, false
}

// checkAKPublic checks the AK's attributes and returns its public key.
func checkAKPublic(pub *gotpm.TPMTPublic) (*ecdsa.PublicKey, error) {
	a := pub.ObjectAttributes
	switch {
	case pub.Type != gotpm.TPMAlgECC:
		return nil, fmt.Errorf("%w: ak_public: type %v, want ECC", ErrAKPublic, pub.Type)
	case !a.Restricted || !a.SignEncrypt || a.Decrypt:
		return nil, fmt.Errorf("%w: ak_public: not a restricted signing key (restricted %v, sign %v, decrypt %v)", ErrAKPublic, a.Restricted, a.SignEncrypt, a.Decrypt)
	case !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin:
		return nil, fmt.Errorf("%w: ak_public: not bound to its TPM (fixedTPM %v, fixedParent %v, sensitiveDataOrigin %v)", ErrAKPublic, a.FixedTPM, a.FixedParent, a.SensitiveDataOrigin)
	case a.AdminWithPolicy || len(pub.AuthPolicy.Buffer) != 0:
		// Its ADMIN role (TPM2_ActivateCredential) then needs the auth
		// value, which an object loaded with only its public part
		// (TPM2_LoadExternal) does not have.
		return nil, fmt.Errorf("%w: ak_public: has an admin policy or authPolicy", ErrAKPublic)
	case pub.NameAlg != gotpm.TPMAlgSHA256:
		return nil, fmt.Errorf("%w: ak_public: name algorithm %v, want SHA-256", ErrAKPublic, pub.NameAlg)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("%w: ak_public: %v", ErrAKPublic, err)
	}
	if parms.CurveID != gotpm.TPMECCNistP256 {
		return nil, fmt.Errorf("%w: ak_public: curve %v, want NIST P-256", ErrAKPublic, parms.CurveID)
	}
	sch, err := parms.Scheme.Details.ECDSA()
	if parms.Scheme.Scheme != gotpm.TPMAlgECDSA || err != nil || sch.HashAlg != gotpm.TPMAlgSHA256 {
		return nil, fmt.Errorf("%w: ak_public: scheme is not ECDSA with SHA-256", ErrAKPublic)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("%w: ak_public: %v", ErrAKPublic, err)
	}
	sec1, err := sec1Point(ecdh.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("%w: ak_public: %v", ErrAKPublic, err)
	}
	return &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(sec1[1:33]), Y: new(big.Int).SetBytes(sec1[33:])}, nil
}

// p256Size is the size of a P-256 scalar: of R and S in an AK signature.
const p256Size = 32

// checkSignature checks the AK's ECDSA-SHA256 signature over certInfo.
//
// R and S must be encoded as a TPM encodes them: at most 32 bytes, and
// either exactly 32 (padded to the order's size, as the TPM reference
// implementation and libtpms do) or without a leading zero byte (minimal).
// Anything else, a zero byte put in front, would verify as the same
// integer and make altered evidence pass.
//
// What this cannot exclude is ECDSA's own malleability: (R, n-S) verifies
// wherever (R, S) does, and TPMs do not normalise S (to low S, say), so
// refusing either half would refuse genuine signatures. A signature is
// therefore not unique to its evidence; nothing relies on it being so
// (the signed cert_info is, and it names the key, the AK and the
// qualifying data).
func checkSignature(ak *ecdsa.PublicKey, certInfo, sigBytes []byte) error {
	sig, err := decode[gotpm.TPMTSignature](sigBytes, "signature")
	if err != nil {
		return err
	}
	if sig.SigAlg != gotpm.TPMAlgECDSA {
		return fmt.Errorf("%w: signature algorithm %v, want ECDSA", ErrSignature, sig.SigAlg)
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if e.Hash != gotpm.TPMAlgSHA256 {
		return fmt.Errorf("%w: signature hash %v, want SHA-256", ErrSignature, e.Hash)
	}
	for _, v := range []struct {
		name string
		b    []byte
	}{{"R", e.SignatureR.Buffer}, {"S", e.SignatureS.Buffer}} {
		switch n := len(v.b); {
		case n == 0 || n > p256Size:
			return fmt.Errorf("%w: signature %s of %d bytes, want 1 to %d", ErrSignature, v.name, n, p256Size)
		case n < p256Size && v.b[0] == 0:
			return fmt.Errorf("%w: signature %s of %d bytes with a leading zero byte (neither padded to %d bytes nor minimal)", ErrSignature, v.name, n, p256Size)
		}
	}
	d := sha256.Sum256(certInfo)
	rr, ss := new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)
	if !ecdsa.Verify(ak, d[:], rr, ss) {
		return fmt.Errorf("%w: the AK's signature over cert_info does not verify", ErrSignature)
	}
	return nil
}

// checkKeyPublic checks the HPKE key's attributes and returns its public
// key (uncompressed SEC 1) and KEM.
func checkKeyPublic(pub *gotpm.TPMTPublic, opts Options) ([]byte, kem.ID, error) {
	a := pub.ObjectAttributes
	switch {
	case pub.Type != gotpm.TPMAlgECC:
		return nil, 0, fmt.Errorf("%w: key_public: type %v, want an ECC key", ErrKeyAttributes, pub.Type)
	case !a.Decrypt || a.Restricted:
		return nil, 0, fmt.Errorf("%w: key_public: not an unrestricted decryption key (decrypt %v, restricted %v)", ErrKeyAttributes, a.Decrypt, a.Restricted)
	case a.SignEncrypt && !opts.AllowSign:
		return nil, 0, fmt.Errorf("%w: key_public: the key can sign as well as decrypt (allow it with Options.AllowSign; twoway-hsm: --allow-sign)", ErrKeyAttributes)
	case !a.SensitiveDataOrigin || !a.FixedTPM:
		// Imported keys have neither, nor fixedParent (their empty
		// authPolicy still keeps TPM2_Duplicate from them).
		if !opts.AllowImported {
			return nil, 0, fmt.Errorf("%w: key_public has sensitiveDataOrigin %v and fixedTPM %v: the TPM did not generate the key, it may exist outside the TPM (allow it with Options.AllowImported; twoway-hsm: --allow-imported)",
				ErrImportedKey, a.SensitiveDataOrigin, a.FixedTPM)
		}
	case !a.FixedParent:
		return nil, 0, fmt.Errorf("%w: key_public: not fixedParent (it can be duplicated)", ErrKeyAttributes)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: key_public: %v", ErrKeyAttributes, err)
	}
	var curve ecdh.Curve
	switch parms.CurveID {
	case gotpm.TPMECCNistP256:
		curve = ecdh.P256()
	case gotpm.TPMECCNistP384:
		curve = ecdh.P384()
	case gotpm.TPMECCNistP521:
		curve = ecdh.P521()
	default:
		return nil, 0, fmt.Errorf("%w: key_public: curve %v", ErrKeyAttributes, parms.CurveID)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: key_public: %v", ErrKeyAttributes, err)
	}
	sec1, err := sec1Point(curve, point)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: key_public: %v", ErrKeyAttributes, err)
	}
	id, err := kem.IDForCurve(curve)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: key_public: %v", ErrKeyAttributes, err)
	}
	return sec1, id, nil
}

// sec1Point returns p as an uncompressed point of curve, checked to be
// on it.
func sec1Point(curve ecdh.Curve, p *gotpm.TPMSECCPoint) ([]byte, error) {
	size := map[ecdh.Curve]int{ecdh.P256(): 32, ecdh.P384(): 48, ecdh.P521(): 66}[curve]
	if len(p.X.Buffer) > size || len(p.Y.Buffer) > size {
		return nil, fmt.Errorf("point coordinates longer than %d bytes", size)
	}
	b := make([]byte, 1+2*size)
	b[0] = 4
	copy(b[1+size-len(p.X.Buffer):1+size], p.X.Buffer)
	copy(b[1+2*size-len(p.Y.Buffer):], p.Y.Buffer)
	if _, err := curve.NewPublicKey(b); err != nil {
		return nil, fmt.Errorf("not a point on %v: %v", curve, err)
	}
	return b, nil
}
