package plugins_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// backendKeys is a set of keys provisioned in one backend for a test: the
// references to give the plugin and the environment it needs.
type backendKeys struct {
	refs []string
	env  []string
}

const pinEnv = "TWOWAY_TEST_PIN"

// softHSMKeys makes a SoftHSM token with the given P-256 keys (imported
// when priv is non-nil, else generated on the token) and returns their
// references. The PIN reaches the plugin through its environment.
func softHSMKeys(t testing.TB, privs ...*ecdh.PrivateKey) backendKeys {
	t.Helper()
	tok := testenv.SoftHSM(t)
	ctx := ctxT(t, 30*time.Second)
	tk, err := pkcs11.OpenToken(ctx, tok.URI())
	if err != nil {
		t.Fatalf("OpenToken: %v", err)
	}
	defer tk.Close()
	var bk backendKeys
	for i, priv := range privs {
		id := []byte{byte(i + 1)}
		var k *pkcs11.Key
		if priv != nil {
			k, err = tk.ImportKey(ctx, priv, pkcs11.KeyRef{ID: id})
		} else {
			k, err = tk.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: id})
		}
		if err != nil {
			t.Fatalf("provision key %d: %v", i, err)
		}
		k.Close()
		bk.refs = append(bk.refs, tok.URIWithoutPIN(fmt.Sprintf("id=%%%02X", i+1))+"&pin-source=env:"+pinEnv)
	}
	bk.env = append(tok.Environ(), pinEnv+"="+tok.PIN)
	return bk
}

// tpmKeys starts an swtpm with the given P-256 keys (imported when priv is
// non-nil, else created in the TPM) saved as key files with an auth value
// the plugin reads from its environment.
func tpmKeys(t testing.TB, privs ...*ecdh.PrivateKey) (backendKeys, *testenv.SWTPM) {
	t.Helper()
	sw := testenv.StartSWTPM(t)
	ctx := ctxT(t, 60*time.Second)
	const auth = "tpm-key-auth"
	tp, err := tpm2.Open(ctx, sw.Transport())
	if err != nil {
		t.Fatalf("tpm2.Open: %v", err)
	}
	// swtpm serves one connection at a time: the plugin can connect only
	// once this one is closed.
	defer tp.Close()
	dir := t.TempDir()
	var bk backendKeys
	for i, priv := range privs {
		var k *tpm2.Key
		if priv != nil {
			k, err = tp.ImportKey(ctx, priv, tpm2.WithAuth([]byte(auth)))
		} else {
			k, err = tp.CreateKey(ctx, ecdh.P256(), tpm2.WithAuth([]byte(auth)))
		}
		if err != nil {
			t.Fatalf("provision TPM key %d: %v", i, err)
		}
		path := filepath.Join(dir, fmt.Sprintf("key%d.pem", i))
		if err := k.WriteKeyFile(path); err != nil {
			t.Fatal(err)
		}
		k.Close()
		bk.refs = append(bk.refs, "tpm2:file="+path+"?tpm="+sw.Transport()+"&auth-source=env:"+pinEnv)
	}
	bk.env = []string{pinEnv + "=" + auth}
	return bk, sw
}

// softKeys writes software key files.
func softKeys(t testing.TB, privs ...*ecdh.PrivateKey) backendKeys {
	t.Helper()
	var bk backendKeys
	for _, priv := range privs {
		if priv == nil {
			ref, _ := softKey(t, kem.DHKEMP256HKDFSHA256)
			bk.refs = append(bk.refs, ref)
			continue
		}
		k, err := kem.NewPrivateKey(kem.DHKEMP256HKDFSHA256, priv.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		bk.refs = append(bk.refs, writeKeyFile(t, k))
	}
	return bk
}

// provision makes the keys in the named backend.
func provision(t testing.TB, backend string, privs ...*ecdh.PrivateKey) backendKeys {
	t.Helper()
	switch backend {
	case "soft":
		return softKeys(t, privs...)
	case "pkcs11":
		return softHSMKeys(t, privs...)
	case "tpm2":
		bk, _ := tpmKeys(t, privs...)
		return bk
	}
	t.Fatalf("unknown backend %q", backend)
	return backendKeys{}
}

var backends = []string{"soft", "pkcs11", "tpm2"}

// TestBackendsEndToEnd opens requests and seals responses through the
// plugin for each backend, with each of the two keys it serves: one-to-one
// and one-to-many, chunked and not, empty, tiny and several chunks long.
func TestBackendsEndToEnd(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			bk := provision(t, backend, nil, nil)
			c := newClient(t, plugins.Config{Keys: bk.refs, Env: bk.env})
			ctx := ctxT(t, 60*time.Second)
			for _, ref := range bk.refs {
				k, err := c.Key(ctx, plugins.KeyName(ref))
				if err != nil {
					t.Fatal(err)
				}
				if k.Backend() != backend {
					t.Errorf("key %s: backend %q, want %q", k.Name(), k.Backend(), backend)
				}
				for _, size := range []int{0, 1, 3000} {
					if err := roundTrips(ctx, k, size); err != nil {
						t.Errorf("key %s, size %d: %v", k.Name(), size, err)
					}
				}
			}
		})
	}
}

// TestImportedKeyMatches checks that the plugin serves exactly the key that
// was imported: the DH output through the plugin equals the software
// computation, for each backend.
func TestImportedKeyMatches(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			priv, err := ecdh.P256().GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			bk := provision(t, backend, priv)
			c := newClient(t, plugins.Config{Keys: bk.refs, Env: bk.env})
			k, err := c.Key(context.Background(), bk.refs[0])
			if err != nil {
				t.Fatal(err)
			}
			if string(k.PublicKeyBytes()) != string(priv.PublicKey().Bytes()) {
				t.Fatal("public key differs from the imported key's")
			}
			peer, _ := ecdh.P256().GenerateKey(rand.Reader)
			want, _ := peer.ECDH(priv.PublicKey())
			got, err := k.ECDH(peer.PublicKey()) // crypto/ecdh.KeyExchanger
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatal("ECDH through the plugin differs from the software computation")
			}
		})
	}
}

// TestAuthErrorCrossesBoundary: a TPM key served with a wrong auth value
// fails with plugins.ErrAuth on the host, which says that retrying will not
// help, rather than with a generic backend error.
func TestAuthErrorCrossesBoundary(t *testing.T) {
	bk, _ := tpmKeys(t, nil)
	bk.env = []string{pinEnv + "=not-the-auth-value"}
	ctx := ctxT(t, 60*time.Second)
	c := newClient(t, plugins.Config{Keys: bk.refs, Env: bk.env, Logger: quietLogger()})
	k, err := c.Key(ctx, plugins.KeyName(bk.refs[0]))
	if err != nil {
		t.Fatal(err)
	}
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	_, err = k.ECDHContext(ctx, peer.PublicKey().Bytes())
	if !errors.Is(err, plugins.ErrAuth) || errors.Is(err, plugins.ErrUnavailable) {
		t.Fatalf("wrong TPM auth value: %v, want plugins.ErrAuth", err)
	}
	if strings.Contains(err.Error(), "not-the-auth-value") {
		t.Fatal("the auth value is in the error")
	}
}
