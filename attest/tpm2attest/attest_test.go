package tpm2attest_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/attest/tpm2attest"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// machine is one swtpm with EK certificates, a TPM on it and a key.
type machine struct {
	sw     *testenv.SWTPM
	tpm    *tpm2.TPM
	key    *tpm2.Key
	cfg    twoway.KeyConfig
	root   *x509.CertPool
	issuer []byte // DER of the CA's issuing certificate
}

func readPEM(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	return blk.Bytes
}

func startMachine(t testing.TB, caDir string) *machine {
	t.Helper()
	sw := testenv.StartSWTPM(t, testenv.SWTPMEKCert(caDir))
	tp, err := tpm2.Open(testCtx(t), sw.Transport())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	m := &machine{sw: sw, tpm: tp}
	rootPath, issuerPath := sw.EKRoot()
	m.root = testenv.CertPool(t, rootPath)
	m.issuer = readPEM(t, issuerPath)
	m.key, err = tp.CreateKey(testCtx(t), ecdh.P256())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.key.Close() })
	m.cfg = keyConfig(1, m.key.PublicKeyBytes())
	return m
}

func keyConfig(id byte, pub []byte) twoway.KeyConfig {
	return twoway.KeyConfig{KeyID: id, KEM: hpke.KEM_P256_HKDF_SHA256, PublicKey: pub,
		Suites: []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}}}
}

func (m *machine) evidence(t testing.TB, key *tpm2.Key, cfg twoway.KeyConfig, nonce []byte) *attest.Evidence {
	t.Helper()
	ev, err := tpm2attest.Collect(testCtx(t), key, cfg, nonce, [][]byte{m.issuer})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return ev
}

func (m *machine) opts(nonce []byte) attest.Options {
	return attest.Options{Roots: m.root, KeyConfigs: []twoway.KeyConfig{m.cfg}, Nonce: nonce}
}

func clone(ev *attest.Evidence) *attest.Evidence {
	c := *ev
	c.KeyConfig = bytes.Clone(ev.KeyConfig)
	c.Nonce = bytes.Clone(ev.Nonce)
	c.EKCert = bytes.Clone(ev.EKCert)
	c.EKChain = nil
	for _, x := range ev.EKChain {
		c.EKChain = append(c.EKChain, bytes.Clone(x))
	}
	c.EKPublic = bytes.Clone(ev.EKPublic)
	c.AKPublic = bytes.Clone(ev.AKPublic)
	c.KeyPublic = bytes.Clone(ev.KeyPublic)
	c.CertInfo = bytes.Clone(ev.CertInfo)
	c.Signature = bytes.Clone(ev.Signature)
	return &c
}

// activate runs the whole activation round trip: the verifier's challenge
// for ev, answered by the TPM tp.
func activate(t testing.TB, ev *attest.Evidence, tp *tpm2.TPM) error {
	t.Helper()
	ch, secret, err := attest.MakeChallenge(ev)
	if err != nil {
		t.Fatalf("MakeChallenge: %v", err)
	}
	ans, err := tpm2attest.Activate(testCtx(t), tp, ch)
	if err != nil {
		return err
	}
	return attest.CheckActivation(secret, ans)
}

func TestEvidence(t *testing.T) {
	caDir := t.TempDir()
	m := startMachine(t, caDir)
	other := startMachine(t, caDir) // another TPM from the same "manufacturer"
	nonce := []byte("a nonce from the client, fresh..")
	ev := m.evidence(t, m.key, m.cfg, nonce)

	t.Run("chain too long", func(t *testing.T) {
		chain := make([][]byte, attest.MaxEKChain+1)
		for i := range chain {
			chain[i] = m.issuer
		}
		if _, err := tpm2attest.Collect(testCtx(t), m.key, m.cfg, nonce, chain); err == nil || !strings.Contains(err.Error(), "more than evidence carries") {
			t.Errorf("Collect with %d chain certificates: %v", len(chain), err)
		}
	})

	t.Run("verifies", func(t *testing.T) {
		// Through the wire form, as a client gets it.
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := attest.ParseEvidence(b)
		if err != nil {
			t.Fatalf("ParseEvidence: %v", err)
		}
		r, err := attest.Verify(parsed, m.opts(nonce))
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if r.KeyID() != 1 || !bytes.Equal(r.KeyConfig.PublicKey, m.key.PublicKeyBytes()) || !r.KeyConfigPublished || !r.NonceChecked {
			t.Errorf("result %+v", r)
		}
		if r.EK.Issuer != "CN=swtpm-localca" || r.EK.Kind != "RSA 2048" || r.EK.Manufacturer != "id:00001014" || r.EK.Model != "swtpm" {
			t.Errorf("EK %+v", r.EK)
		}
		want := attest.Attributes{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, Decrypt: true}
		if r.Attributes != want || r.Imported {
			t.Errorf("attributes %+v imported %v", r.Attributes, r.Imported)
		}
		if err := activate(t, parsed, m.tpm); err != nil {
			t.Fatalf("activation: %v", err)
		}
	})

	t.Run("EK certificate's critical SAN is what the verifier handles", func(t *testing.T) {
		c, err := x509.ParseCertificate(ev.EKCert)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.UnhandledCriticalExtensions) != 1 || c.UnhandledCriticalExtensions[0].String() != "2.5.29.17" {
			t.Fatalf("unhandled critical extensions %v: want crypto/x509 to leave the TPM SAN unhandled", c.UnhandledCriticalExtensions)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: m.root, Intermediates: pool(t, m.issuer), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			t.Fatal("crypto/x509 verified the EK certificate alone: the SAN handling is not exercised")
		}
	})

	t.Run("a flipped bit in each field", func(t *testing.T) {
		fields := []struct {
			name string
			get  func(*attest.Evidence) []byte
			want []error
		}{
			{"key_config", func(e *attest.Evidence) []byte { return e.KeyConfig }, []error{attest.ErrMalformed, attest.ErrKeyConfig, attest.ErrNonce}},
			{"nonce", func(e *attest.Evidence) []byte { return e.Nonce }, []error{attest.ErrNonce}},
			{"ek_cert", func(e *attest.Evidence) []byte { return e.EKCert }, []error{attest.ErrEKCertificate}},
			{"ek_chain", func(e *attest.Evidence) []byte { return e.EKChain[0] }, []error{attest.ErrEKCertificate}},
			{"ek_public", func(e *attest.Evidence) []byte { return e.EKPublic }, []error{attest.ErrMalformed, attest.ErrEKPublic}},
			{"ak_public", func(e *attest.Evidence) []byte { return e.AKPublic }, []error{attest.ErrMalformed, attest.ErrAKPublic, attest.ErrSignature}},
			{"key_public", func(e *attest.Evidence) []byte { return e.KeyPublic }, []error{attest.ErrMalformed, attest.ErrKeyName}},
			{"cert_info", func(e *attest.Evidence) []byte { return e.CertInfo }, []error{attest.ErrMalformed, attest.ErrSignature}},
			{"signature", func(e *attest.Evidence) []byte { return e.Signature }, []error{attest.ErrMalformed, attest.ErrSignature}},
		}
		for _, f := range fields {
			n := len(f.get(ev))
			step := max(1, n/97) // every byte of the small fields, ~100 places in a certificate
			for i := 0; i < n; i += step {
				for _, bit := range []byte{0x01, 0x80} {
					bad := clone(ev)
					f.get(bad)[i] ^= bit
					_, err := attest.Verify(bad, m.opts(nonce))
					if err == nil {
						t.Fatalf("%s: byte %d ^ %#x: verified", f.name, i, bit)
					}
					if !isAny(err, f.want) {
						t.Fatalf("%s: byte %d ^ %#x: %v, want one of %v", f.name, i, bit, err, f.want)
					}
				}
			}
		}
	})

	t.Run("wrong root", func(t *testing.T) {
		stranger := startMachine(t, "") // a CA of its own
		o := m.opts(nonce)
		o.Roots = stranger.root
		_, err := attest.Verify(ev, o)
		if !errors.Is(err, attest.ErrEKCertificate) {
			t.Fatalf("Verify with another CA's root: %v, want ErrEKCertificate", err)
		}
		// The issuing CA as the root works too (a verifier that pins it).
		o.Roots = pool(t, m.issuer)
		if _, err := attest.Verify(ev, o); err != nil {
			t.Fatalf("Verify with the issuing CA as root: %v", err)
		}
	})

	t.Run("an AK from another TPM", func(t *testing.T) {
		// Everything but the EK from the other TPM: the signature and
		// the key verify, the EK certificate too, but the AK is not in
		// the EK's TPM, and only activation can tell.
		oev := other.evidence(t, other.key, other.cfg, nonce)
		mixed := clone(oev)
		mixed.EKCert, mixed.EKPublic = ev.EKCert, ev.EKPublic
		o := other.opts(nonce)
		if _, err := attest.Verify(mixed, o); err != nil {
			t.Fatalf("Verify: %v (it cannot see this; activation must)", err)
		}
		// The EK's TPM refuses the AK before trying...
		if err := activate(t, mixed, m.tpm); !errors.Is(err, tpm2.ErrWrongTPM) {
			t.Fatalf("activation by the EK's TPM: %v, want tpm2.ErrWrongTPM", err)
		}
		// ... and the AK's TPM has not the EK.
		if err := activate(t, mixed, other.tpm); !errors.Is(err, tpm2.ErrWrongTPM) {
			t.Fatalf("activation by the AK's TPM: %v, want tpm2.ErrWrongTPM", err)
		}
	})

	t.Run("activation answered by another TPM", func(t *testing.T) {
		ch, secret, err := attest.MakeChallenge(ev)
		if err != nil {
			t.Fatal(err)
		}
		// The other TPM refuses a challenge for this TPM's EK.
		if _, err := tpm2attest.Activate(testCtx(t), other.tpm, ch); !errors.Is(err, tpm2.ErrWrongTPM) {
			t.Fatalf("another TPM answered: %v, want tpm2.ErrWrongTPM", err)
		}
		// A prover that lies, answering with its own credential for its
		// own EK and AK, does not pass.
		oev := other.evidence(t, other.key, other.cfg, nil)
		och, _, err := attest.MakeChallenge(oev)
		if err != nil {
			t.Fatal(err)
		}
		ans, err := tpm2attest.Activate(testCtx(t), other.tpm, och)
		if err != nil {
			t.Fatal(err)
		}
		if err := attest.CheckActivation(secret, ans); !errors.Is(err, attest.ErrActivation) {
			t.Fatalf("another TPM's answer: %v, want ErrActivation", err)
		}
		// The credential tampered with: the TPM refuses it.
		ch2, _, err := attest.MakeChallenge(ev)
		if err != nil {
			t.Fatal(err)
		}
		ch2.CredentialBlob[len(ch2.CredentialBlob)-1] ^= 1
		if _, err := tpm2attest.Activate(testCtx(t), m.tpm, ch2); !errors.Is(err, tpm2.ErrActivation) {
			t.Fatalf("tampered credential: %v, want tpm2.ErrActivation", err)
		}
		// A secret answers once.
		ch3, s3, err := attest.MakeChallenge(ev)
		if err != nil {
			t.Fatal(err)
		}
		a3, err := tpm2attest.Activate(testCtx(t), m.tpm, ch3)
		if err != nil {
			t.Fatal(err)
		}
		if err := attest.CheckActivation(s3, a3); err != nil {
			t.Fatal(err)
		}
		if err := attest.CheckActivation(s3, a3); !errors.Is(err, attest.ErrActivation) {
			t.Fatalf("second use of a secret: %v, want ErrActivation", err)
		}
	})

	t.Run("an HPKE key from another TPM", func(t *testing.T) {
		oev := other.evidence(t, other.key, other.cfg, nonce)
		// Its public area alone: not the certified name.
		bad := clone(ev)
		bad.KeyPublic = oev.KeyPublic
		if _, err := attest.Verify(bad, m.opts(nonce)); !errors.Is(err, attest.ErrKeyName) {
			t.Fatalf("key public area from another TPM: %v, want ErrKeyName", err)
		}
		// With its certification by the other TPM's AK: not this AK's
		// signature.
		bad.CertInfo, bad.Signature, bad.KeyConfig = oev.CertInfo, oev.Signature, oev.KeyConfig
		if _, err := attest.Verify(bad, m.opts(nonce)); !errors.Is(err, attest.ErrSignature) {
			t.Fatalf("key certified by another TPM's AK: %v, want ErrSignature", err)
		}
	})

	t.Run("an imported key", func(t *testing.T) {
		priv, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ik, err := m.tpm.ImportKey(testCtx(t), priv)
		if err != nil {
			t.Fatal(err)
		}
		defer ik.Close()
		cfg := keyConfig(2, ik.PublicKeyBytes())
		iev := m.evidence(t, ik, cfg, nonce)
		o := m.opts(nonce)
		o.KeyConfigs = []twoway.KeyConfig{cfg}
		_, err = attest.Verify(iev, o)
		if !errors.Is(err, attest.ErrImportedKey) {
			t.Fatalf("imported key: %v, want ErrImportedKey", err)
		}
		o.AllowImported = true
		r, err := attest.Verify(iev, o)
		if err != nil {
			t.Fatalf("imported key, allowed: %v", err)
		}
		if !r.Imported || r.Attributes.SensitiveDataOrigin || r.Attributes.FixedTPM {
			t.Fatalf("imported key reported as %+v, imported %v", r.Attributes, r.Imported)
		}
	})

	t.Run("stale or wrong nonce", func(t *testing.T) {
		_, err := attest.Verify(ev, m.opts([]byte("another nonce")))
		if !errors.Is(err, attest.ErrNonce) {
			t.Fatalf("stale nonce: %v, want ErrNonce", err)
		}
		// The nonce field rewritten to the expected one: the qualifying
		// data does not match.
		bad := clone(ev)
		bad.Nonce = []byte("another nonce")
		if _, err := attest.Verify(bad, m.opts([]byte("another nonce"))); !errors.Is(err, attest.ErrNonce) {
			t.Fatalf("rewritten nonce: %v, want ErrNonce", err)
		}
		// No nonce in the evidence when one is expected, and the other
		// way round.
		bare := m.evidence(t, m.key, m.cfg, nil)
		if _, err := attest.Verify(bare, m.opts(nonce)); !errors.Is(err, attest.ErrNonce) {
			t.Fatalf("evidence without a nonce: %v, want ErrNonce", err)
		}
		if _, err := attest.Verify(ev, m.opts(nil)); !errors.Is(err, attest.ErrNonce) {
			t.Fatalf("unexpected nonce: %v, want ErrNonce", err)
		}
		o := m.opts(nil)
		o.AnyNonce = true
		if r, err := attest.Verify(ev, o); err != nil || r.NonceChecked {
			t.Fatalf("AnyNonce: %v, %+v", err, r)
		}
		if r, err := attest.Verify(bare, m.opts(nil)); err != nil || r.NonceChecked {
			t.Fatalf("no nonce: %v", err)
		}
	})

	t.Run("a key configuration whose public key differs", func(t *testing.T) {
		o := m.opts(nonce)
		o.KeyConfigs = []twoway.KeyConfig{other.cfg} // id 1, another key
		if _, err := attest.Verify(ev, o); !errors.Is(err, attest.ErrKeyConfig) {
			t.Fatalf("published config with another key: %v, want ErrKeyConfig", err)
		}
		// The evidence's own config rewritten to another key.
		bad := clone(ev)
		bad.KeyConfig, _ = other.cfg.MarshalBinary()
		if _, err := attest.Verify(bad, attest.Options{Roots: m.root, Nonce: nonce}); !errors.Is(err, attest.ErrKeyConfig) {
			t.Fatalf("evidence's config with another key: %v, want ErrKeyConfig", err)
		}
		// Same key, other suites than published.
		cfg := m.cfg
		cfg.Suites = []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_ChaCha20Poly1305}}
		o.KeyConfigs = []twoway.KeyConfig{cfg}
		if _, err := attest.Verify(ev, o); !errors.Is(err, attest.ErrKeyConfig) {
			t.Fatalf("published config with other suites: %v, want ErrKeyConfig", err)
		}
	})
}

func pool(t testing.TB, ders ...[]byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		p.AddCert(c)
	}
	return p
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// TestWriteTestdata regenerates attest/testdata (evidence from a swtpm
// with EK certificates, its CA's root and issuer, the key configuration)
// with TWOWAY_ATTEST_WRITE_TESTDATA=1; package attest's unit tests and
// fuzz seeds use them without a TPM.
func TestWriteTestdata(t *testing.T) {
	if os.Getenv("TWOWAY_ATTEST_WRITE_TESTDATA") != "1" {
		t.Skip("set TWOWAY_ATTEST_WRITE_TESTDATA=1 to regenerate attest/testdata")
	}
	m := startMachine(t, "")
	ev := m.evidence(t, m.key, m.cfg, []byte("testdata nonce"))
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := twoway.MarshalKeyConfigs([]twoway.KeyConfig{m.cfg})
	if err != nil {
		t.Fatal(err)
	}
	rootPath, issuerPath := m.sw.EKRoot()
	dir := filepath.Join("..", "testdata")
	for name, content := range map[string][]byte{
		"evidence.json": b, "key-config.bin": kc,
		"root.pem": mustRead(t, rootPath), "issuer.pem": mustRead(t, issuerPath),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
