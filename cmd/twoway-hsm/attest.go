package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/attest/tpm2attest"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore/tpm2store"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

const keysAttestUsage = `Usage: twoway-hsm keys attest REF --out FILE [--key-id N] [--suite KDF/AEAD ...] [--nonce HEX] [flags]

Writes the evidence that a TPM key was made in a TPM and cannot leave it,
for clients to check with 'twoway-hsm attest verify' or package attest:

  - the TPM's EK certificate, from its NV (ECC P-256 0x01c0000a or RSA
    2048 0x01c00002), and any intermediates the TPM holds (--ek-chain
    adds the manufacturer's issuing CAs, PEM);
  - the EK's and the attestation key's (AK) public areas: the AK is a
    restricted signing key derived in the endorsement hierarchy, the same
    on every run, never stored;
  - TPM2_Certify of the key by the AK, whose qualifying data binds the
    key configuration (key id, KEM, public key, suites, as the gateway
    publishes it) and the nonce;
  - the key's public area (fixedTPM, sensitiveDataOrigin, decrypt, ...).

--key-id and --suite must be what the gateway publishes the key with
(default: key id 1 and the KEM's default suites), or clients comparing
the evidence with the published configuration refuse it. --nonce is a
client's nonce (hex, at most 64 bytes) for fresh evidence. --out - writes
to stdout. Nothing is written to the TPM.

Only TPM keys (tpm2:) can be attested: PKCS#11 has no standard key
attestation.

Examples:
  twoway-hsm keys attest 'tpm2:file=/etc/twoway/gw.pem' --key-id 1 --out gw-evidence.json
  twoway-hsm keys attest 'tpm2:file=gw.pem?tpm=unix:/tmp/tpm/data.sock' --nonce 6e6f6e6365 --out -
`

const attestUsage = `Usage: twoway-hsm attest <subcommand> [flags]

Checks the evidence that a gateway's HPKE key lives in a TPM.

Subcommands:
  verify FILE --roots PEM        verify evidence from 'twoway-hsm keys attest'
  verify --gateway URL --roots PEM
                                 verify a running gateway's keys, with
                                 fresh evidence and activation through it

Examples:
  twoway-hsm attest verify --gateway https://gw.example --roots tpm-roots.pem
  twoway-hsm attest verify gw-evidence.json --roots tpm-roots.pem --key-config gw.ohttp-keys --activate 'tpm2:?tpm=/dev/tpmrm0'

Run 'twoway-hsm attest verify -h' for its flags and more examples.
`

const attestVerifyUsage = `Usage: twoway-hsm attest verify FILE --roots PEM [--key-config FILE] [--nonce HEX] [--activate REF | --skip-activation] [flags]
       twoway-hsm attest verify --gateway URL --roots PEM [flags]

Verifies evidence from 'twoway-hsm keys attest' (FILE, or - for stdin)
and prints what it verified: key id, KEM, public key, the EK
certificate's issuer and the TPM, the key's attributes. It exits 0 only
when the evidence verifies:

  - the EK certificate chains to --roots (PEM, the TPM manufacturers'
    roots; --intermediates adds issuing CAs);
  - the EK public area is the certificate's key; the AK is a restricted
    signing key bound to its TPM; it signed TPM2_Certify of the key;
  - the key was generated in a TPM (sensitiveDataOrigin, fixedTPM; an
    imported key is refused without --allow-imported) and is a
    decrypt-only key (--allow-sign accepts one that can sign);
  - the key configuration is one of --key-config's (the gateway's
    application/ohttp-keys body) and the evidence is for --nonce.

The evidence alone cannot show that the AK is in the same TPM as the EK:
only that TPM can, by credential activation, a round trip with it.
--activate tpm2:?tpm=TRANSPORT does the round trip with a TPM this
machine reaches (the operator checking their own machine). Without it
the command says that the AK-EK binding is NOT verified and exits 1,
unless --skip-activation is given: then it exits 0 and still prints that
the binding is unverified.

--gateway URL verifies a running twoway-hsm gateway as a client does
(package attest/attesthttp): it fetches the key configuration from URL
(the gateway path; a URL without a path means its
/.well-known/ohttp-gateway) and fresh evidence for a random nonce from
URL/evidence?nonce=HEX, verifies the evidence of every published key as
above, and runs credential activation through the gateway
(URL/evidence/activate), whose plugin answers with the key's TPM. It
exits 0 only when every published key is attested; a PKCS#11 or soft key
is reported as not attestable. --ca-cert FILE trusts a gateway whose TLS
certificate a private CA issued, and --client-cert/--client-key present a
client certificate (a gateway that requires mutual TLS).

Examples:
  twoway-hsm attest verify --gateway https://gw.example/.well-known/ohttp-gateway --roots tpm-roots.pem
  twoway-hsm attest verify gw-evidence.json --roots tpm-roots.pem --key-config gw.ohttp-keys --activate 'tpm2:?tpm=/dev/tpmrm0'
  twoway-hsm attest verify gw-evidence.json --roots tpm-roots.pem --nonce 6e6f6e6365 --skip-activation --json
`

var attestSubcommands = []command{
	{name: "verify", summary: "verify TPM key evidence", run: runAttestVerify},
}

func runAttest(ctx context.Context, env *environment, args []string) int {
	return runSubcommand(ctx, env, "attest", attestUsage, attestSubcommands, args)
}

// attestView is what keys attest prints.
type attestView struct {
	Out       string `json:"out"`
	KeyID     byte   `json:"key_id"`
	KEM       string `json:"kem"`
	PublicKey string `json:"public_key"`
	EKIssuer  string `json:"ek_issuer"`
	Nonce     string `json:"nonce,omitempty"`
}

func runKeysAttest(ctx context.Context, env *environment, args []string) int {
	sc := newSecretCmd(env, "keys attest", keysAttestUsage)
	sc.addJSON()
	out := sc.fs.String("out", "", "the evidence file to write (- for stdout)")
	nonceHex := sc.fs.String("nonce", "", "a verifier's nonce, hex (at most 64 bytes)")
	keyID := sc.fs.Int("key-id", 1, "the key id the gateway publishes the key under (0-255)")
	chainFile := sc.fs.String("ek-chain", "", "a PEM file of intermediate certificates to add for the EK certificate")
	var suites stringList
	sc.fs.Var(&suites, "suite", "a symmetric suite `KDF/AEAD` the gateway offers with the key (repeatable)")
	c, code, ok := sc.prepare(args)
	if !ok {
		return code
	}
	defer c.res.wipe()
	if *out == "" {
		return c.fail(usagef("missing --out FILE (or --out - for stdout)"))
	}
	if *keyID < 0 || *keyID > 255 {
		return c.fail(usagef("--key-id %d: want 0 to 255", *keyID))
	}
	nonce, err := parseNonce(*nonceHex)
	if err != nil {
		return c.fail(err)
	}
	var chain [][]byte
	if *chainFile != "" {
		certs, err := readCertsPEM(env, *chainFile)
		if err != nil {
			return c.fail(fmt.Errorf("--ek-chain: %w", err))
		}
		for _, cert := range certs {
			chain = append(chain, cert.Raw)
		}
	}
	if c.res.backend.Scheme != tpm2.RefScheme {
		return c.fail(fmt.Errorf("%s keys cannot be attested: only TPM keys (tpm2:) have key attestation here; PKCS#11 has no standard for it", c.res.backend.Scheme))
	}
	k, err := c.store.Open(ctx, c.res.ref, c.opts)
	if err != nil {
		return c.fail(err)
	}
	defer k.Close()
	sk, ok := k.(*tpm2store.Key)
	if !ok {
		return c.fail(fmt.Errorf("the %s key store did not give a TPM key", c.res.backend.Scheme))
	}
	tk := sk.Key
	cfg := twoway.KeyConfig{KeyID: byte(*keyID), KEM: hpke.KEM(tk.KEM()), PublicKey: tk.PublicKeyBytes()}
	for _, s := range suites {
		suite, err := parseSuite(s)
		if err != nil {
			return c.fail(usagef("--suite %q: %v", s, err))
		}
		cfg.Suites = append(cfg.Suites, suite)
	}
	if len(cfg.Suites) == 0 {
		cfg.Suites = defaultSuites(tk.KEM())
	}
	ev, err := tpm2attest.Collect(ctx, tk, cfg, nonce, chain)
	if err != nil {
		return c.fail(err)
	}
	b, err := ev.Marshal()
	if err != nil {
		return c.fail(err)
	}
	v := &attestView{Out: *out, KeyID: cfg.KeyID, KEM: kemShort(tk.KEM()), PublicKey: hex.EncodeToString(cfg.PublicKey)}
	if nonce != nil {
		v.Nonce = hex.EncodeToString(nonce)
	}
	if cert, err := x509.ParseCertificate(ev.EKCert); err == nil {
		v.EKIssuer = cert.Issuer.String()
	}
	if *out == "-" {
		if c.json {
			return c.fail(usagef("--json and --out - both write to stdout"))
		}
		if _, err := env.stdout.Write(b); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	if err := writeFileAtomic(*out, b, 0o644); err != nil {
		return c.fail(err)
	}
	return c.output(v, func(w io.Writer) {
		fmt.Fprintf(w, "wrote %s: evidence for key id %d (%s, public key %s)\n", v.Out, v.KeyID, v.KEM, v.PublicKey)
		fmt.Fprintf(w, "EK certificate issuer: %s\n", v.EKIssuer)
		if v.Nonce != "" {
			fmt.Fprintf(w, "nonce: %s\n", v.Nonce)
		}
	})
}

// verifyView is what attest verify prints.
type verifyView struct {
	Verified           bool              `json:"verified"`
	KeyID              byte              `json:"key_id"`
	KEM                string            `json:"kem"`
	PublicKey          string            `json:"public_key"`
	Suites             []string          `json:"suites"`
	KeyConfigPublished bool              `json:"key_config_published"`
	Nonce              string            `json:"nonce,omitempty"`
	NonceChecked       bool              `json:"nonce_checked"`
	EK                 attest.EKInfo     `json:"ek"`
	Attributes         attest.Attributes `json:"attributes"`
	Imported           bool              `json:"imported"`
	AKName             string            `json:"ak_name"`
	// Binding is "verified" (credential activation with Activated) or
	// "unverified".
	Binding   string `json:"ak_ek_binding"`
	Activated string `json:"activated_with,omitempty"`

	// publishedBy and nonceBy say, for people, where the published key
	// configuration and the nonce came from ("" for the flags).
	publishedBy, nonceBy string
}

// errBindingUnverified is the failure of attest verify without
// --activate or --skip-activation.
var errBindingUnverified = errors.New("the AK-EK binding is NOT verified: nothing shows that the attestation key is in the TPM of the EK certificate; " +
	"verify it with --activate tpm2:?tpm=TRANSPORT (a TPM this machine reaches), or accept the evidence without it with --skip-activation")

func runAttestVerify(ctx context.Context, env *environment, args []string) int {
	c := newCmdline(env, "attest verify", attestVerifyUsage)
	c.addJSON()
	var roots, inters stringList
	c.fs.Var(&roots, "roots", "a PEM `FILE` of trusted root certificates of TPM manufacturers (repeatable)")
	c.fs.Var(&inters, "intermediates", "a PEM `FILE` of untrusted intermediate certificates (repeatable)")
	keyConfig := c.fs.String("key-config", "", "the published key configuration (the application/ohttp-keys body)")
	nonceHex := c.fs.String("nonce", "", "the nonce the evidence must be for (hex)")
	activate := c.fs.String("activate", "", "a TPM reference (tpm2:?tpm=TRANSPORT) to verify the AK-EK binding with by credential activation")
	skip := c.fs.Bool("skip-activation", false, "accept the evidence without verifying the AK-EK binding")
	anyNonce := c.fs.Bool("any-nonce", false, "without --nonce, accept evidence made for a nonce (it is then not known to be fresh)")
	allowImported := c.fs.Bool("allow-imported", false, "accept a key imported into the TPM (it existed outside the TPM)")
	allowSign := c.fs.Bool("allow-sign", false, "accept a key that can sign as well as decrypt")
	gwURL := c.fs.String("gateway", "", "verify a running gateway instead of a FILE: its `URL` (the gateway path; without a path, its /.well-known/ohttp-gateway)")
	var tlsf tlsFlags // for --gateway
	tlsf.register(c.fs)
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if *gwURL != "" {
		switch {
		case len(pos) != 0:
			return c.fail(usagef("give --gateway URL or an evidence FILE, not both"))
		case len(roots) == 0:
			return c.fail(usagef("missing --roots PEM (the TPM manufacturers' root certificates)"))
		case *keyConfig != "" || *nonceHex != "" || *activate != "" || *skip || *anyNonce:
			return c.fail(usagef("--gateway fetches the key configuration, sends its own nonce and activates through the gateway: --key-config, --nonce, --any-nonce, --activate and --skip-activation do not apply"))
		}
		u, err := gatewayURL("--gateway", *gwURL)
		if err != nil {
			return c.fail(err)
		}
		if err := tlsf.check(); err != nil {
			return c.fail(err)
		}
		hc, err := tlsf.httpClient()
		if err != nil {
			return c.fail(err)
		}
		defer hc.CloseIdleConnections()
		opts := attest.Options{AllowImported: *allowImported, AllowSign: *allowSign}
		if opts.Roots, err = certPool(env, roots); err != nil {
			return c.fail(fmt.Errorf("--roots: %w", err))
		}
		if len(inters) > 0 {
			if opts.Intermediates, err = certPool(env, inters); err != nil {
				return c.fail(fmt.Errorf("--intermediates: %w", err))
			}
		}
		return verifyGateway(ctx, c, hc, u.String(), opts)
	}
	switch {
	case tlsf != (tlsFlags{}):
		return c.fail(usagef("--ca-cert, --client-cert and --client-key are for --gateway"))
	case len(pos) != 1:
		return c.fail(usagef("want one evidence FILE, got %d arguments", len(pos)))
	case len(roots) == 0:
		return c.fail(usagef("missing --roots PEM (the TPM manufacturers' root certificates)"))
	case *activate != "" && *skip:
		return c.fail(usagef("give --activate or --skip-activation, not both"))
	}
	nonce, err := parseNonce(*nonceHex)
	if err != nil {
		return c.fail(err)
	}
	opts := attest.Options{Nonce: nonce, AnyNonce: *anyNonce, AllowImported: *allowImported, AllowSign: *allowSign}
	if opts.Roots, err = certPool(env, roots); err != nil {
		return c.fail(fmt.Errorf("--roots: %w", err))
	}
	if len(inters) > 0 {
		if opts.Intermediates, err = certPool(env, inters); err != nil {
			return c.fail(fmt.Errorf("--intermediates: %w", err))
		}
	}
	if *keyConfig != "" {
		b, err := readKeyConfigFile(*keyConfig)
		if err != nil {
			return c.fail(fmt.Errorf("--key-config: %w", err))
		}
		list, err := splitKeyConfigs(b)
		if err != nil {
			return c.fail(withHint(fmt.Errorf("--key-config %s: %w", *keyConfig, err), keyConfigFileHint(b)))
		}
		opts.KeyConfigs = []twoway.KeyConfig{}
		for _, l := range list {
			if l.err == nil {
				opts.KeyConfigs = append(opts.KeyConfigs, l.cfg)
			}
		}
	}
	var ref *tpm2.KeyRef
	if *activate != "" {
		if ref, err = tpm2.ParseRef(*activate); err != nil {
			return c.fail(usagef("--activate: %v", err))
		}
		if ref.Key() || ref.Dir != "" {
			return c.fail(usagef("--activate names a TPM, not a key: tpm2:?tpm=TRANSPORT"))
		}
	}

	b, err := readEvidence(env, pos[0])
	if err != nil {
		return c.fail(err)
	}
	ev, err := attest.ParseEvidence(b)
	if err != nil {
		return c.fail(fmt.Errorf("evidence NOT verified: %s: %w", pos[0], err))
	}
	r, err := attest.Verify(ev, opts)
	if err != nil {
		return c.fail(fmt.Errorf("evidence NOT verified: %w", err))
	}
	v := viewOfResult(r)
	if ref != nil {
		if err := activateWith(ctx, ref.Transport(), ev); err != nil {
			return c.fail(fmt.Errorf("evidence NOT verified: the AK-EK binding failed: %w", err))
		}
		v.Binding, v.Activated = "verified", ref.Transport()
	}
	if ref == nil && !*skip {
		printVerify(env.stderr, v)
		return c.fail(errBindingUnverified)
	}
	v.Verified = true
	return c.output(v, func(w io.Writer) { printVerify(w, v) })
}

// activateWith runs credential activation for ev with the TPM at
// transport, as a remote verifier would through the gateway.
func activateWith(ctx context.Context, transport string, ev *attest.Evidence) error {
	ch, secret, err := attest.MakeChallenge(ev)
	if err != nil {
		return err
	}
	t, err := tpm2.Open(ctx, transport)
	if err != nil {
		return err
	}
	defer t.Close()
	ans, err := tpm2attest.Activate(ctx, t, ch)
	if err != nil {
		return err
	}
	return attest.CheckActivation(secret, ans)
}

func viewOfResult(r *attest.Result) *verifyView {
	v := &verifyView{
		KeyID: r.KeyID(), KEM: kemShort(kem.ID(r.KeyConfig.KEM)), PublicKey: hex.EncodeToString(r.KeyConfig.PublicKey),
		KeyConfigPublished: r.KeyConfigPublished, NonceChecked: r.NonceChecked, EK: r.EK,
		Attributes: r.Attributes, Imported: r.Imported, AKName: hex.EncodeToString(r.AKName), Binding: "unverified",
	}
	for _, s := range r.KeyConfig.Suites {
		v.Suites = append(v.Suites, kdfName(s.KDF)+"/"+aeadName(s.AEAD))
	}
	if r.Nonce != nil {
		v.Nonce = hex.EncodeToString(r.Nonce)
	}
	return v
}

func printVerify(w io.Writer, v *verifyView) {
	fmt.Fprintf(w, "key id:         %d\n", v.KeyID)
	fmt.Fprintf(w, "KEM:            %s\n", v.KEM)
	fmt.Fprintf(w, "public key:     %s\n", v.PublicKey)
	fmt.Fprintf(w, "suites:         %s\n", strings.Join(v.Suites, ", "))
	if v.KeyConfigPublished {
		fmt.Fprintf(w, "key config:     one of the published configurations (%s)\n", cmp.Or(v.publishedBy, "--key-config"))
	} else {
		fmt.Fprintln(w, "key config:     not compared with a published configuration (no --key-config)")
	}
	switch {
	case v.NonceChecked:
		fmt.Fprintf(w, "nonce:          %s (%s: fresh)\n", v.Nonce, cmp.Or(v.nonceBy, "the one given"))
	case v.Nonce != "":
		fmt.Fprintf(w, "nonce:          %s (not checked: no --nonce)\n", v.Nonce)
	default:
		fmt.Fprintln(w, "nonce:          none (the evidence is not known to be fresh)")
	}
	fmt.Fprintf(w, "EK certificate: %s, issuer %s, serial %s\n", v.EK.Kind, v.EK.Issuer, v.EK.Serial)
	if v.EK.Manufacturer != "" {
		fmt.Fprintf(w, "TPM:            manufacturer %s, model %s, version %s\n", v.EK.Manufacturer, v.EK.Model, v.EK.Version)
	}
	fmt.Fprintf(w, "attributes:     %s\n", attrList(v.Attributes))
	if v.Imported {
		fmt.Fprintln(w, "origin:         IMPORTED into the TPM (no sensitiveDataOrigin): the key existed outside it")
	} else {
		fmt.Fprintln(w, "origin:         generated in the TPM (sensitiveDataOrigin, fixedTPM)")
	}
	fmt.Fprintf(w, "AK name:        %s\n", v.AKName)
	if v.Binding == "verified" {
		fmt.Fprintf(w, "AK-EK binding:  verified by credential activation with %s\n", v.Activated)
	} else {
		fmt.Fprintln(w, "AK-EK binding:  NOT verified (no credential activation): that the AK is in the EK's TPM rests on the operator's word")
	}
}

func attrList(a attest.Attributes) string {
	var out []string
	for _, f := range []struct {
		set  bool
		name string
	}{
		{a.FixedTPM, "fixedTPM"}, {a.FixedParent, "fixedParent"}, {a.SensitiveDataOrigin, "sensitiveDataOrigin"},
		{a.UserWithAuth, "userWithAuth"}, {a.AdminWithPolicy, "adminWithPolicy"}, {a.NoDA, "noDA"},
		{a.Restricted, "restricted"}, {a.Decrypt, "decrypt"}, {a.Sign, "sign"},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return strings.Join(out, " ")
}

// parseNonce parses a hex nonce; "" is none.
func parseNonce(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, usagef("--nonce: not hex: %v", err)
	}
	if len(b) > attest.MaxNonceSize {
		return nil, usagef("--nonce: %d bytes, at most %d", len(b), attest.MaxNonceSize)
	}
	return b, nil
}

// maxCertsPEM bounds a certificate bundle (--roots: every TPM maker's
// roots fit many times over).
const maxCertsPEM = 4 << 20

// readCertsPEM reads the CERTIFICATE blocks of a PEM file; anything else
// in it is an error.
func readCertsPEM(env *environment, path string) ([]*x509.Certificate, error) {
	b, err := readFileBounded(env, path, maxCertsPEM, "a PEM certificate bundle")
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, not CERTIFICATE", path, n, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n, err)
		}
		out = append(out, c)
	}
	if len(strings.TrimSpace(string(b))) != 0 {
		return nil, fmt.Errorf("%s: text after the last PEM block", path)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return out, nil
}

func certPool(env *environment, files []string) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	for _, f := range files {
		certs, err := readCertsPEM(env, f)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			p.AddCert(c)
		}
	}
	return p, nil
}

func readEvidence(env *environment, path string) ([]byte, error) {
	return readFileBounded(env, path, attest.MaxEvidenceSize, "evidence")
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, renamed into place.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
