package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Object identifiers of the TCG EK Credential Profile (section 3.2) and
// X.509.
var (
	oidSubjectAltName    = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer   = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel          = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion        = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidEKCertificateKP   = asn1.ObjectIdentifier{2, 23, 133, 8, 1} // tcg-kp-EKCertificate
	oidTCGAttributesBase = asn1.ObjectIdentifier{2, 23, 133, 2}
)

// VerifyEKCertificate parses an EK certificate (DER) and verifies that it
// chains to opts.Roots through the untrusted intermediates chain and
// opts.Intermediates, at opts.Time. It returns what the certificate says
// and the EK's public key (*rsa.PublicKey or *ecdsa.PublicKey). Errors
// wrap ErrEKCertificate.
//
// EK certificates differ from web certificates, deliberately handled
// here rather than by ignoring every unhandled critical extension:
//
//   - Their subject is often empty, and the subject alternative name,
//     then critical (RFC 5280 4.2.1.6), holds only a directoryName with
//     the TCG attributes tpmManufacturer, tpmModel and tpmVersion
//     (2.23.133.2.1-3), which crypto/x509 does not parse and so leaves
//     unhandled. This function parses it; a SAN of that shape is
//     reported (EKInfo.Manufacturer, Model, Version) and counted as
//     handled; any other critical extension crypto/x509 leaves
//     unhandled is an error that names its OID.
//   - Their extended key usage, when present, is tcg-kp-EKCertificate
//     (2.23.133.8.1), which crypto/x509 does not know: it must be
//     there, and the chain is not checked for web key usages.
func VerifyEKCertificate(der []byte, chain [][]byte, opts Options) (*EKInfo, crypto.PublicKey, error) {
	cert, err := parseCert(der)
	if err != nil {
		return nil, nil, err
	}
	info := &EKInfo{Issuer: cert.Issuer.String(), Subject: cert.Subject.String(), Serial: cert.SerialNumber.String()}
	var unhandled []asn1.ObjectIdentifier
	for _, oid := range cert.UnhandledCriticalExtensions {
		if oid.Equal(oidSubjectAltName) {
			ext := findExtension(cert, oidSubjectAltName)
			if err := parseTPMSAN(ext, info); err != nil {
				return nil, nil, fmt.Errorf("%w: ek_cert: critical subject alternative name: %v", ErrEKCertificate, err)
			}
			continue
		}
		unhandled = append(unhandled, oid)
	}
	if len(unhandled) > 0 {
		return nil, nil, fmt.Errorf("%w: ek_cert: unhandled critical extension %v", ErrEKCertificate, unhandled)
	}
	if info.Manufacturer == "" {
		// A non-critical SAN may hold the TCG attributes too.
		if ext := findExtension(cert, oidSubjectAltName); ext != nil {
			_ = parseTPMSAN(ext, info)
		}
	}
	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		if !slices.ContainsFunc(cert.UnknownExtKeyUsage, oidEKCertificateKP.Equal) {
			return nil, nil, fmt.Errorf("%w: ek_cert: extended key usage without tcg-kp-EKCertificate (2.23.133.8.1)", ErrEKCertificate)
		}
	}
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		info.Kind = fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		info.Kind = "ECC " + k.Curve.Params().Name
	default:
		return nil, nil, fmt.Errorf("%w: ek_cert: public key of type %T", ErrEKCertificate, cert.PublicKey)
	}

	inter := x509.NewCertPool()
	if opts.Intermediates != nil {
		inter = opts.Intermediates.Clone()
	}
	for i, b := range chain {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: ek_chain[%d]: %v", ErrEKCertificate, i, err)
		}
		inter.AddCert(c)
	}
	// The critical SAN is handled above; crypto/x509 must not refuse it
	// again. A copy keeps the parsed certificate intact.
	leaf := *cert
	leaf.UnhandledCriticalExtensions = nil
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         opts.Roots,
		Intermediates: inter,
		CurrentTime:   opts.Time,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ek_cert (issuer %q): %v", ErrEKCertificate, info.Issuer, err)
	}
	info.Chain = chains[0]
	return info, cert.PublicKey, nil
}

func findExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) *pkix.Extension {
	for i := range c.Extensions {
		if c.Extensions[i].Id.Equal(oid) {
			return &c.Extensions[i]
		}
	}
	return nil
}

// parseTPMSAN parses a subject alternative name that holds only
// directoryNames of TCG attributes, with a tpmManufacturer.
func parseTPMSAN(ext *pkix.Extension, info *EKInfo) error {
	if ext == nil {
		return errors.New("missing")
	}
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(ext.Value, &names)
	if err != nil || len(rest) != 0 {
		return errors.New("not a GeneralNames sequence")
	}
	if len(names) == 0 {
		return errors.New("empty")
	}
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific || n.Tag != 4 || !n.IsCompound {
			return fmt.Errorf("a general name of tag [%d] besides the TPM's directoryName", n.Tag)
		}
		var rdns pkix.RDNSequence
		rest, err := asn1.Unmarshal(n.Bytes, &rdns)
		if err != nil || len(rest) != 0 {
			return errors.New("a directoryName that does not parse")
		}
		for _, rdn := range rdns {
			for _, atv := range rdn {
				s, ok := atv.Value.(string)
				if !ok {
					return fmt.Errorf("attribute %v is not a string", atv.Type)
				}
				switch {
				case atv.Type.Equal(oidTPMManufacturer):
					info.Manufacturer = s
				case atv.Type.Equal(oidTPMModel):
					info.Model = s
				case atv.Type.Equal(oidTPMVersion):
					info.Version = s
				case hasPrefix(atv.Type, oidTCGAttributesBase):
					// other TCG attributes: kept out of the report
				default:
					return fmt.Errorf("attribute %v is not a TCG TPM attribute", atv.Type)
				}
			}
		}
	}
	if info.Manufacturer == "" {
		return errors.New("no tpmManufacturer (2.23.133.2.1)")
	}
	info.Manufacturer = strings.TrimSpace(info.Manufacturer)
	return nil
}

func hasPrefix(oid, prefix asn1.ObjectIdentifier) bool {
	return len(oid) > len(prefix) && oid[:len(prefix)].Equal(prefix)
}

func parseCert(der []byte) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: ek_cert: %v", ErrEKCertificate, err)
	}
	return cert, nil
}
