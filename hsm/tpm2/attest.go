package tpm2

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	gotpm "github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// This file is the prover's side of key attestation (package attest is the
// verifier's): the endorsement key (EK) and its certificate from NV, an
// attestation key (AK), TPM2_Certify of a key by the AK, and
// TPM2_ActivateCredential, which proves to a verifier that the AK lives
// in the TPM that holds the EK. Nothing here exports, imports or
// provisions a key, and nothing is written to the TPM: the AK is a
// primary key that is derived again, identically, whenever it is needed.

// ErrNoEKCertificate means the TPM holds no EK certificate at the TCG NV
// indices this package reads (ECC P-256 0x01c0000a, RSA 2048 0x01c00002),
// or none that matches its EK.
var ErrNoEKCertificate = errors.New("tpm2: no usable EK certificate in the TPM's NV")

// ErrActivation means TPM2_ActivateCredential refused the credential: it
// was not made for this TPM's EK and AK (or was altered).
var ErrActivation = errors.New("tpm2: credential activation failed")

// TCG EK Credential Profile 2.x, section 2.2.1.5: the NV indices of the
// low-range EK certificates and of the EK certificate chain.
const (
	ekCertIndexRSA2048  uint32 = 0x01c00002
	ekCertIndexECCP256  uint32 = 0x01c0000a
	ekChainIndexFirst   uint32 = 0x01c00100
	ekChainIndexLast    uint32 = 0x01c001ff
	maxNVCertSize              = 4096
	nvReadChunk                = 512 // below every TPM's TPM_PT_NV_BUFFER_MAX
	persistentEKRSA2048        = Handle(0x81010001)
	persistentEKECCP256        = Handle(0x81010002)
)

// ekKind is one of the EKs whose certificate this package looks for, with
// the TCG default template (L-1, L-2) the TPM derives it from.
type ekKind struct {
	name       string
	certIndex  uint32
	persistent Handle // where the TCG Provisioning Guidance keeps it
	template   gotpm.TPMTPublic
}

// ekKinds, in order of preference: ECC first (a quick CreatePrimary).
var ekKinds = []ekKind{
	{"ECC P-256", ekCertIndexECCP256, persistentEKECCP256, gotpm.ECCEKTemplate},
	{"RSA 2048", ekCertIndexRSA2048, persistentEKRSA2048, gotpm.RSAEKTemplate},
}

// akTemplate is the public template of the attestation key: a restricted
// ECDSA P-256/SHA-256 signing key, fixedTPM, fixedParent,
// sensitiveDataOrigin, userWithAuth with an empty auth value and no
// policy (so its ADMIN role, which TPM2_ActivateCredential needs, takes
// the auth value, which an object loaded from outside with
// TPM2_LoadExternal does not have), and a unique field of 32 zero bytes
// per coordinate. It is go-tpm-tools' AKTemplateECC, the template of the
// AKs that Google's Shielded VMs certify, created as a primary key in the
// endorsement hierarchy: it is derived from the endorsement seed, so the
// same AK comes back on every call, survives TPM2_Clear of the owner
// hierarchy, and needs no key file or persistent handle.
var akTemplate = gotpm.TPMTPublic{
	Type:    gotpm.TPMAlgECC,
	NameAlg: gotpm.TPMAlgSHA256,
	ObjectAttributes: gotpm.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: gotpm.NewTPMUPublicParms(gotpm.TPMAlgECC, &gotpm.TPMSECCParms{
		Symmetric: gotpm.TPMTSymDefObject{Algorithm: gotpm.TPMAlgNull},
		Scheme: gotpm.TPMTECCScheme{
			Scheme:  gotpm.TPMAlgECDSA,
			Details: gotpm.NewTPMUAsymScheme(gotpm.TPMAlgECDSA, &gotpm.TPMSSigSchemeECDSA{HashAlg: gotpm.TPMAlgSHA256}),
		},
		CurveID: gotpm.TPMECCNistP256,
		KDF:     gotpm.TPMTKDFScheme{Scheme: gotpm.TPMAlgNull},
	}),
	Unique: gotpm.NewTPMUPublicID(gotpm.TPMAlgECC, &gotpm.TPMSECCPoint{
		X: gotpm.TPM2BECCParameter{Buffer: make([]byte, 32)},
		Y: gotpm.TPM2BECCParameter{Buffer: make([]byte, 32)},
	}),
}

// Endorsement is the TPM's endorsement key as a verifier needs it.
type Endorsement struct {
	// Kind is "ECC P-256" or "RSA 2048".
	Kind string
	// CertIndex is the NV index the certificate was read from.
	CertIndex uint32
	// Certificate is the EK certificate (DER), without the padding some
	// TPMs leave after it in NV.
	Certificate []byte
	// Chain holds the certificates the TPM keeps in the TCG EK
	// certificate chain indices (0x01c00100-0x01c001ff), DER, in index
	// order; usually none.
	Chain [][]byte
	// Public is the EK's public area (a marshalled TPMT_PUBLIC).
	Public []byte
}

// clone is a deep copy of e, for callers that may change what they get.
func (e *Endorsement) clone() *Endorsement {
	out := *e
	out.Certificate, out.Public = bytes.Clone(e.Certificate), bytes.Clone(e.Public)
	out.Chain = nil
	for _, c := range e.Chain {
		out.Chain = append(out.Chain, bytes.Clone(c))
	}
	return &out
}

// Certification is TPM2_Certify of a key by the attestation key.
type Certification struct {
	// KeyPublic is the certified key's public area (TPMT_PUBLIC).
	KeyPublic []byte
	// AKPublic is the attestation key's public area (TPMT_PUBLIC).
	AKPublic []byte
	// CertifyInfo is the TPMS_ATTEST the AK signed.
	CertifyInfo []byte
	// Signature is the AK's TPMT_SIGNATURE over CertifyInfo.
	Signature []byte
}

// Endorsement reads the EK certificate from NV (ECC P-256 first, then RSA
// 2048), and the EK it certifies: the persistent EK at the TCG handle
// when it is the default template's and the certificate's key, otherwise
// the primary key derived from the default template, which must have the
// certificate's key. Errors wrap [ErrNoEKCertificate] when there is none.
// It is read once per connection to the TPM (again after a reconnect):
// the endorsement seed, and so the EK, does not change under a running
// process.
func (t *TPM) Endorsement(ctx context.Context) (*Endorsement, error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("tpm2: endorsement key: %w", ErrClosed)
	}
	var out *Endorsement
	err := t.c.do(ctx, func() error {
		if t.c.endorsement == nil {
			t.c.makeRoom(nil, 1)
			ek, err := t.c.endorsementKey()
			if err != nil {
				return err
			}
			ek.release(t.c)
			e := ek.Endorsement
			if e.Chain, err = t.c.ekChain(); err != nil {
				return err
			}
			t.c.endorsement = &e
		}
		out = t.c.endorsement.clone()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm2: endorsement key: %w", err)
	}
	return out, nil
}

// Certify has the attestation key sign the key's public area with
// TPM2_Certify: a TPMS_ATTEST carrying the key's name and qualifyingData
// (at most 64 bytes; package attest puts a hash of the key configuration
// and the verifier's nonce there). It needs the key's auth value when
// the key has one.
func (k *Key) Certify(ctx context.Context, qualifyingData []byte) (*Certification, error) {
	if k.closed.Load() {
		return nil, fmt.Errorf("tpm2: certify: %w", ErrClosed)
	}
	if len(qualifyingData) > 64 {
		return nil, fmt.Errorf("tpm2: certify: qualifying data of %d bytes, more than 64", len(qualifyingData))
	}
	c := k.c
	var out *Certification
	err := c.do(ctx, func() error {
		h, s, err := c.authorize(k)
		if err != nil {
			return err
		}
		c.makeRoom(k, 1)
		ak, err := c.createAK()
		if err != nil {
			return err
		}
		defer c.flush(ak.handle)
		s.use(k.auth, false, false)
		rsp, err := gotpm.Certify{
			ObjectHandle:   gotpm.AuthHandle{Handle: h, Name: k.name, Auth: s},
			SignHandle:     gotpm.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: gotpm.PasswordAuth(nil)},
			QualifyingData: gotpm.TPM2BData{Buffer: qualifyingData},
			InScheme:       gotpm.TPMTSigScheme{Scheme: gotpm.TPMAlgNull},
		}.Execute(c.tr)
		if err != nil {
			return mapRC(err)
		}
		out = &Certification{
			KeyPublic:   bytes.Clone(k.pubArea),
			AKPublic:    gotpm.Marshal(*ak.pub),
			CertifyInfo: bytes.Clone(rsp.CertifyInfo.Bytes()),
			Signature:   gotpm.Marshal(rsp.Signature),
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm2: certify: %w", err)
	}
	return out, nil
}

// ActivateCredential is the prover's half of credential activation
// (TPM 2.0 Part 1, 24): it has the TPM decrypt a credential that a
// verifier made with TPM2_MakeCredential (or go-tpm's CreateCredential)
// for this TPM's EK and the name of its AK, and returns the credential.
// The TPM releases it only when the EK's private key and an object with
// the AK's name are both in it, which is what convinces the verifier.
//
// ekPublic and akPublic are the public areas the verifier made the
// credential for (from the evidence); they must be this TPM's, or the
// call fails before the TPM is asked: ekPublic must be the EK of a TCG
// default template (L-1 RSA 2048 or L-2 ECC P-256), the persistent one at
// the TCG handle or the one the TPM derives from the template. No EK
// certificate is read: the verifier checked it. The EK is authorized
// with its policy (PolicySecret on the endorsement hierarchy, empty
// auth); the AK with its empty auth value. Nothing is exported or stored.
// Errors wrap [ErrWrongTPM] for public areas that are not this TPM's and
// [ErrActivation] when the TPM refuses the credential.
func (t *TPM) ActivateCredential(ctx context.Context, ekPublic, akPublic, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("tpm2: activate credential: %w", ErrClosed)
	}
	kind, ok := ekKindOf(ekPublic)
	if !ok {
		return nil, fmt.Errorf("tpm2: activate credential: %w: the EK public area given is not an EK from a TCG default template (L-1 RSA 2048, L-2 ECC P-256)", ErrWrongTPM)
	}
	var out []byte
	err := t.c.do(ctx, func() error {
		c := t.c
		c.makeRoom(nil, 2)
		ek, err := c.ekFor(kind, func(pub *gotpm.TPMTPublic) bool { return bytes.Equal(gotpm.Marshal(*pub), ekPublic) })
		if errors.Is(err, errNotThisEK) {
			return fmt.Errorf("%w: the EK public area given is not this TPM's %s EK", ErrWrongTPM, kind.name)
		}
		if err != nil {
			return err
		}
		defer ek.release(c)
		ak, err := c.createAK()
		if err != nil {
			return err
		}
		defer c.flush(ak.handle)
		if !bytes.Equal(gotpm.Marshal(*ak.pub), akPublic) {
			return fmt.Errorf("%w: the AK public area given is not this TPM's attestation key", ErrWrongTPM)
		}
		rsp, err := gotpm.ActivateCredential{
			ActivateHandle: gotpm.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: gotpm.PasswordAuth(nil)},
			KeyHandle:      gotpm.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: gotpm.Policy(gotpm.TPMAlgSHA256, 16, endorsementPolicy)},
			CredentialBlob: gotpm.TPM2BIDObject{Buffer: credentialBlob},
			Secret:         gotpm.TPM2BEncryptedSecret{Buffer: encryptedSecret},
		}.Execute(c.tr)
		if err != nil {
			if isStateLost(err) || isTransportError(err) || isRetryWarning(err) {
				return err
			}
			return fmt.Errorf("%w: the credential was not made for this TPM's EK and AK: %w", ErrActivation, err)
		}
		out = bytes.Clone(rsp.CertInfo.Buffer)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm2: activate credential: %w", err)
	}
	return out, nil
}

// ekKindOf returns the kind of EK whose template pub, a marshalled
// TPMT_PUBLIC, is (but for its unique field).
func ekKindOf(pub []byte) (ekKind, bool) {
	p, err := unmarshalPublic(pub)
	if err != nil {
		return ekKind{}, false
	}
	for _, kind := range ekKinds {
		if sameTemplate(p, &kind.template) {
			return kind, true
		}
	}
	return ekKind{}, false
}

// unmarshalPublic decodes a TPMT_PUBLIC from outside, which go-tpm's
// decoder does not always survive.
func unmarshalPublic(b []byte) (pub *gotpm.TPMTPublic, err error) {
	defer func() {
		if r := recover(); r != nil {
			pub, err = nil, errors.New("malformed TPMT_PUBLIC")
		}
	}()
	return gotpm.Unmarshal[gotpm.TPMTPublic](b)
}

// endorsementPolicy satisfies the default EK templates' policy, PolicyA:
// PolicySecret(TPM_RH_ENDORSEMENT) with the (usually empty) endorsement
// auth.
func endorsementPolicy(tr transport.TPM, h gotpm.TPMISHPolicy, nonceTPM gotpm.TPM2BNonce) error {
	_, err := gotpm.PolicySecret{
		AuthHandle:    gotpm.AuthHandle{Handle: gotpm.TPMRHEndorsement, Auth: gotpm.PasswordAuth(nil)},
		PolicySession: h,
		NonceTPM:      nonceTPM,
	}.Execute(tr)
	return err
}

// createAK derives the attestation key (CreatePrimary in the endorsement
// hierarchy from akTemplate). The caller flushes it.
func (c *conn) createAK() (*primary, error) {
	ak, err := c.createPrimary(gotpm.TPMRHEndorsement, akTemplate)
	if err != nil {
		return nil, fmt.Errorf("creating the attestation key: %w", err)
	}
	return ak, nil
}

// ek is the endorsement key, loaded (transient) or persistent.
type ek struct {
	Endorsement
	handle    gotpm.TPMHandle
	name      gotpm.TPM2BName
	transient bool
}

func (e *ek) release(c *conn) {
	if e.transient {
		c.flush(e.handle)
		e.transient = false
	}
}

// endorsementKey finds the first EK certificate in NV and the EK it
// certifies.
func (c *conn) endorsementKey() (*ek, error) {
	var errs []error
	for _, kind := range ekKinds {
		der, err := c.readNVCert(kind.certIndex)
		if errors.Is(err, gotpm.TPMRCHandle) {
			continue // no such index
		}
		if err != nil {
			return nil, fmt.Errorf("reading the %s EK certificate at NV 0x%08x: %w", kind.name, kind.certIndex, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			errs = append(errs, fmt.Errorf("the %s EK certificate at NV 0x%08x does not parse: %w", kind.name, kind.certIndex, err))
			continue
		}
		e, err := c.ekFor(kind, func(pub *gotpm.TPMTPublic) bool { return holdsKey(pub, cert.PublicKey) })
		if errors.Is(err, errNotThisEK) {
			err = errors.New("its public key is not the EK's (from the TCG default template)")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("the %s EK certificate at NV 0x%08x: %w", kind.name, kind.certIndex, err))
			continue
		}
		e.Kind, e.CertIndex, e.Certificate = kind.name, kind.certIndex, der
		return e, nil
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w: no certificate at NV 0x%08x (ECC P-256) or 0x%08x (RSA 2048)", ErrNoEKCertificate, ekCertIndexECCP256, ekCertIndexRSA2048)
	}
	return nil, fmt.Errorf("%w: %w", ErrNoEKCertificate, errors.Join(errs...))
}

// errNotThisEK: the EK of the kind asked for is not the one wanted.
var errNotThisEK = errors.New("not the EK wanted")

// ekFor returns the EK of kind for which want holds: the persistent EK
// at the TCG handle when it is from the kind's template, otherwise the
// primary key derived from the template. It fails with errNotThisEK when
// want holds for neither.
func (c *conn) ekFor(kind ekKind, want func(*gotpm.TPMTPublic) bool) (*ek, error) {
	if pub, name, err := c.readPublic(kind.persistent); err == nil && sameTemplate(pub, &kind.template) && want(pub) {
		return &ek{handle: gotpm.TPMHandle(kind.persistent), name: name,
			Endorsement: Endorsement{Public: gotpm.Marshal(*pub)}}, nil
	}
	p, err := c.createPrimary(gotpm.TPMRHEndorsement, kind.template)
	if err != nil {
		return nil, fmt.Errorf("creating the EK from the TCG template: %w", err)
	}
	if !want(p.pub) {
		c.flush(p.handle)
		return nil, errNotThisEK
	}
	return &ek{handle: p.handle, name: p.name, transient: true,
		Endorsement: Endorsement{Public: gotpm.Marshal(*p.pub)}}, nil
}

// sameTemplate reports whether pub is tmpl but for the unique field.
func sameTemplate(pub, tmpl *gotpm.TPMTPublic) bool {
	a, b := *pub, *tmpl
	a.Unique, b.Unique = gotpm.TPMUPublicID{}, gotpm.TPMUPublicID{}
	return bytes.Equal(gotpm.Marshal(a), gotpm.Marshal(b))
}

// holdsKey reports whether the public area holds key (an *rsa.PublicKey
// or *ecdsa.PublicKey from a certificate).
func holdsKey(pub *gotpm.TPMTPublic, key crypto.PublicKey) bool {
	k, err := gotpm.Pub(*pub)
	if err != nil {
		return false
	}
	eq, ok := k.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(key)
}

// readNVCert reads a certificate from an NV index and cuts it to its DER
// length (TPMs pad certificates in NV).
func (c *conn) readNVCert(index uint32) ([]byte, error) {
	b, err := c.readNV(index)
	if err != nil {
		return nil, err
	}
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(b, &raw)
	if err != nil {
		return nil, fmt.Errorf("not a DER certificate: %w", err)
	}
	return b[:len(b)-len(rest)], nil
}

// readNV reads a whole NV index with its own (empty) auth value, or the
// owner's if the index does not allow that.
func (c *conn) readNV(index uint32) ([]byte, error) {
	rp, err := gotpm.NVReadPublic{NVIndex: gotpm.TPMHandle(index)}.Execute(c.tr)
	if err != nil {
		return nil, err
	}
	nvPub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	size := int(nvPub.DataSize)
	if size > maxNVCertSize {
		return nil, fmt.Errorf("NV index 0x%08x holds %d bytes, more than %d", index, size, maxNVCertSize)
	}
	nv := gotpm.NamedHandle{Handle: gotpm.TPMHandle(index), Name: rp.NVName}
	read := func(auth gotpm.AuthHandle) ([]byte, error) {
		out := make([]byte, 0, size)
		for off := 0; off < size; {
			n := min(nvReadChunk, size-off)
			rsp, err := gotpm.NVRead{AuthHandle: auth, NVIndex: nv, Size: uint16(n), Offset: uint16(off)}.Execute(c.tr)
			if err != nil {
				return nil, err
			}
			if len(rsp.Data.Buffer) != n {
				return nil, fmt.Errorf("NV index 0x%08x: short read", index)
			}
			out = append(out, rsp.Data.Buffer...)
			off += n
		}
		return out, nil
	}
	var b []byte
	if nvPub.Attributes.AuthRead {
		b, err = read(gotpm.AuthHandle{Handle: nv.Handle, Name: nv.Name, Auth: gotpm.PasswordAuth(nil)})
	} else {
		err = errors.New("no AUTHREAD")
	}
	if err != nil && nvPub.Attributes.OwnerRead {
		b, err = read(gotpm.AuthHandle{Handle: gotpm.TPMRHOwner, Auth: gotpm.PasswordAuth(nil)})
	}
	if err != nil {
		return nil, fmt.Errorf("NV index 0x%08x: %w", index, err)
	}
	return b, nil
}

// ekChain reads the certificates in the TCG EK certificate chain indices.
func (c *conn) ekChain() ([][]byte, error) {
	hs, err := c.handles(gotpm.TPMHTNVIndex)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, h := range hs {
		if uint32(h) < ekChainIndexFirst || uint32(h) > ekChainIndexLast {
			continue
		}
		b, err := c.readNV(uint32(h))
		if err != nil {
			return nil, fmt.Errorf("reading the EK certificate chain at NV 0x%08x: %w", uint32(h), err)
		}
		// An index may hold several certificates back to back, then
		// padding.
		for len(b) > 0 && b[0] == 0x30 {
			var raw asn1.RawValue
			rest, err := asn1.Unmarshal(b, &raw)
			if err != nil {
				break
			}
			out = append(out, bytes.Clone(b[:len(b)-len(rest)]))
			b = rest
		}
	}
	return out, nil
}

// TPM returns a TPM on the key's connection, for what concerns the TPM
// rather than the key (its endorsement key, credential activation). The
// caller closes it; the key stays open.
func (k *Key) TPM() (*TPM, error) {
	if k.closed.Load() {
		return nil, fmt.Errorf("tpm2: %w", ErrClosed)
	}
	k.c.addRef()
	cfg := *k.c.cfg
	cfg.perKey()
	return &TPM{c: k.c, cfg: &cfg}, nil
}
