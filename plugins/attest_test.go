package plugins_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"
	gotpm "github.com/google/go-tpm/tpm2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	kempluginv2 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v2"
	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// tpmKeyRef starts an swtpm with EK certificates, creates a P-256 key in
// it and returns the swtpm and the key's reference. It closes its own
// connection: swtpm serves one, the plugin's.
func tpmKeyRef(ctx context.Context, t *testing.T) (*testenv.SWTPM, string) {
	t.Helper()
	sw := testenv.StartSWTPM(t, testenv.SWTPMEKCert(""))
	tp, err := tpm2.Open(ctx, sw.Transport())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	k, err := tp.CreateKey(ctx, ecdh.P256())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	path := filepath.Join(t.TempDir(), "gw.pem")
	if err := k.WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	return sw, "tpm2:file=" + path + "?tpm=" + sw.Transport()
}

// TestAttestThroughPlugin: the plugin's Attest and Activate prove a TPM
// key (the evidence verifies against swtpm-localca's root, bound to the
// key configuration and nonce, and the key's TPM answers the activation
// challenge), report a soft key as not attestable with the reason, and
// refuse inputs over their bounds and a key configuration that is not the
// key's.
func TestAttestThroughPlugin(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	sw, tref := tpmKeyRef(ctx, t)
	roots, intermediates := sw.EKPools()
	sref := softKeys(t, nil).refs[0]
	c := newClient(t, plugins.Config{Keys: []string{tref, sref}})

	tk, err := c.Key(ctx, tref)
	if err != nil {
		t.Fatal(err)
	}
	cfg := twoway.KeyConfig{KeyID: 5, KEM: hpke.KEM(tk.KEM()), PublicKey: tk.PublicKeyBytes(),
		Suites: []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}}}
	nonce := []byte("a client's nonce")
	ev, err := tk.Attest(ctx, cfg, nonce)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	r, err := attest.Verify(ev, attest.Options{Roots: roots, Intermediates: intermediates,
		KeyConfigs: []twoway.KeyConfig{cfg}, Nonce: nonce})
	if err != nil {
		t.Fatalf("the plugin's evidence does not verify: %v", err)
	}
	if r.KeyID() != 5 || !r.NonceChecked || r.Imported {
		t.Errorf("result: %+v", r)
	}
	ch, secret, err := attest.MakeChallenge(ev)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := tk.Activate(ctx, ch)
	if err != nil {
		t.Fatalf("Activate: %v", err)
	}
	if err := attest.CheckActivation(secret, ans); err != nil {
		t.Fatalf("CheckActivation: %v", err)
	}

	// A challenge for another AK: the TPM refuses it.
	bad := *ch
	bad.CredentialBlob = append([]byte(nil), ch.CredentialBlob...)
	bad.CredentialBlob[len(bad.CredentialBlob)-1] ^= 1
	if ans, err := tk.Activate(ctx, &bad); err == nil && attest.CheckActivation(secret, ans) == nil {
		t.Error("a tampered credential was activated")
	}
	// A key configuration that is not the key's.
	wrong := cfg
	wrong.PublicKey = append([]byte(nil), cfg.PublicKey...)
	wrong.PublicKey[10] ^= 1
	if _, err := tk.Attest(ctx, wrong, nil); err == nil || !strings.Contains(err.Error(), "not this key's") {
		t.Errorf("Attest with another key's configuration: %v", err)
	}
	// Bounds, checked before the call.
	if _, err := tk.Attest(ctx, cfg, make([]byte, attest.MaxNonceSize+1)); err == nil || !strings.Contains(err.Error(), "nonce of 65 bytes") {
		t.Errorf("Attest with a 65-byte nonce: %v", err)
	}

	// The soft key: not attestable, saying why; the process is fine.
	sk, err := c.Key(ctx, sref)
	if err != nil {
		t.Fatal(err)
	}
	cfg.PublicKey, cfg.KEM = sk.PublicKeyBytes(), hpke.KEM(sk.KEM())
	if _, err := sk.Attest(ctx, cfg, nil); !errors.Is(err, attest.ErrNotAttestable) || !strings.Contains(err.Error(), "software key") {
		t.Errorf("Attest of a soft key: %v, want ErrNotAttestable saying why", err)
	}
	if _, err := sk.Activate(ctx, ch); !errors.Is(err, attest.ErrNotAttestable) {
		t.Errorf("Activate with a soft key: %v, want ErrNotAttestable", err)
	}
	cfg.PublicKey, cfg.KEM = tk.PublicKeyBytes(), hpke.KEM(tk.KEM())
	if _, err := tk.Attest(ctx, cfg, nil); err != nil {
		t.Errorf("the TPM key after the soft key's refusals: %v", err)
	}
}

// TestActivateReleasesNoCredential: TPM2_ActivateCredential decrypts any
// credential made for the EK and the AK's name, and the AK's template is
// a well-known one (go-tpm-tools' AKTemplateECC), so a credential some
// other party made for this TPM's AK must not come out of the plugin to
// whoever asks (a compromised gateway process): the answer holds a proof,
// never the credential, and a credential of a size attest.MakeChallenge
// does not make is not activated at all.
func TestActivateReleasesNoCredential(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	_, tref := tpmKeyRef(ctx, t)
	c := newClient(t, plugins.Config{Keys: []string{tref}})
	tk, err := c.Key(ctx, tref)
	if err != nil {
		t.Fatal(err)
	}
	cfg := twoway.KeyConfig{KeyID: 1, KEM: hpke.KEM(tk.KEM()), PublicKey: tk.PublicKeyBytes(),
		Suites: []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}}}
	ev, err := tk.Attest(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ekPub, err := gotpm.Unmarshal[gotpm.TPMTPublic](ev.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := gotpm.Unmarshal[gotpm.TPMTPublic](ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	akName, err := gotpm.ObjectName(akPub)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := gotpm.ImportEncapsulationKey(ekPub)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{32, 16, 48} {
		// Another party's credential for this TPM's EK and AK.
		cred := bytes.Repeat([]byte{0xc0 | byte(size)}, size)
		blob, enc, err := gotpm.CreateCredential(rand.Reader, ek, akName.Buffer, cred)
		if err != nil {
			t.Fatal(err)
		}
		ans, err := tk.Activate(ctx, &attest.Challenge{Version: attest.ActivationVersion, EKPublic: ev.EKPublic, AKPublic: ev.AKPublic,
			CredentialBlob: blob, EncryptedSecret: enc})
		if err != nil {
			if size == 32 {
				t.Errorf("a %d-byte credential: %v", size, err)
			}
			continue
		}
		if size != 32 {
			t.Errorf("a %d-byte credential (not one attest.MakeChallenge makes) was activated", size)
		}
		j, err := json.Marshal(ans)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(j, []byte(base64.StdEncoding.EncodeToString(cred))) {
			t.Errorf("the plugin's answer %s holds the %d-byte credential itself", j, size)
		}
	}
}

// TestAttestOldPlugin: a plugin that predates the attestation RPCs
// answers UNIMPLEMENTED; the host reports a key that cannot be attested,
// saying the plugin is too old. A Backend that is not an Attester gets
// the same sentinel, with its own reason.
func TestAttestOldPlugin(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  kempluginv2.KEMPluginServer
		want string
	}{
		{"no RPC", kempluginv2.UnimplementedKEMPluginServer{}, "built before it"},
		{"backend without attestation", &plugins.GRPCServer{Impl: nonAttester{}}, "does not attest keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := grpc.NewServer()
			kempluginv2.RegisterKEMPluginServer(s, tc.srv)
			go s.Serve(ln)
			t.Cleanup(s.Stop)
			conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			raw, err := (&plugins.GRPCPlugin{}).GRPCClient(context.Background(), nil, conn)
			if err != nil {
				t.Fatal(err)
			}
			gc := raw.(*plugins.GRPCClient)
			ctx := ctxT(t, 10*time.Second)
			pub := make([]byte, 65)
			pub[0] = 4
			_, err = gc.Attest(ctx, "tpm2:file=x", twoway.KeyConfig{KeyID: 1, KEM: hpke.KEM_P256_HKDF_SHA256, PublicKey: pub,
				Suites: []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}}}, nil)
			if !errors.Is(err, attest.ErrNotAttestable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Attest: %v, want ErrNotAttestable saying %q", err, tc.want)
			}
			_, err = gc.Activate(ctx, "tpm2:file=x", &attest.Challenge{Version: 1, EKPublic: []byte{1}, AKPublic: []byte{1}, CredentialBlob: []byte{1}, EncryptedSecret: []byte{1}})
			if !errors.Is(err, attest.ErrNotAttestable) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Activate: %v, want ErrNotAttestable saying %q", err, tc.want)
			}
		})
	}
}

// nonAttester is a Backend without attestation.
type nonAttester struct{ plugins.Backend }
