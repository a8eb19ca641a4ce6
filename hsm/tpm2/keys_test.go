package tpm2

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

func TestCreateKeyECDH(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	curves, err := tp.Curves(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TPM curves: %v", curves)
	if !slices.Contains(curves, ecdh.P256()) || !slices.Contains(curves, ecdh.P384()) {
		t.Fatalf("swtpm lacks P-256 or P-384: %v", curves)
	}
	for _, curve := range curves {
		t.Run(fmt.Sprint(curve), func(t *testing.T) {
			k := createKey(t, tp, curve)
			wantKEM, _ := kem.IDForCurve(curve)
			if k.KEM() != wantKEM || k.Curve() != curve {
				t.Fatalf("KEM %v curve %v, want %v", k.KEM(), k.Curve(), wantKEM)
			}
			if len(k.PublicKeyBytes()) != wantKEM.PublicKeySize() {
				t.Fatalf("public key is %d bytes, want %d", len(k.PublicKeyBytes()), wantKEM.PublicKeySize())
			}
			for range 3 {
				checkECDH(t, ctx, k)
			}
			// crypto/ecdh.KeyExchanger with its default timeout.
			peer := softwarePeer(t, curve)
			got, err := k.ECDH(peer.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			want, _ := peer.ECDH(k.PublicKey())
			if !bytes.Equal(got, want) || len(got) != wantKEM.DHSize() {
				t.Fatalf("ECDH() mismatch")
			}
		})
	}
}

func TestImportMatchesSoftware(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	for _, curve := range allCurves {
		t.Run(fmt.Sprint(curve), func(t *testing.T) {
			priv := softwarePeer(t, curve)
			k, err := tp.ImportKey(ctx, priv, WithAuth([]byte("import-pw")))
			if err != nil {
				t.Fatalf("ImportKey: %v", err)
			}
			closeKey(t, k)
			if !k.PublicKey().Equal(priv.PublicKey()) {
				t.Fatal("imported key has a different public key")
			}
			for range 3 {
				peer := softwarePeer(t, curve)
				got, err := k.ECDHContext(ctx, peer.PublicKey().Bytes())
				if err != nil {
					t.Fatalf("ECDHContext: %v", err)
				}
				want, err := priv.ECDH(peer.PublicKey()) // the same private key, in software
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("imported key ECDH mismatch:\n tpm %x\n sw  %x", got, want)
				}
			}
			// The key file round-trips and loads.
			pemBytes, err := k.KeyFile()
			if err != nil {
				t.Fatal(err)
			}
			k2, err := tp.LoadKey(ctx, pemBytes, WithAuth([]byte("import-pw")))
			if err != nil {
				t.Fatalf("LoadKey(imported): %v", err)
			}
			closeKey(t, k2)
			checkECDH(t, ctx, k2)
		})
	}
}

func TestHPKEWithTPMKey(t *testing.T) {
	_, tp := startTPM(t)
	for _, curve := range []ecdh.Curve{ecdh.P256(), ecdh.P384()} {
		k := createKey(t, tp, curve)
		// crypto/hpke takes the TPM key as an ecdh.KeyExchanger.
		priv, err := hpke.NewDHKEMPrivateKey(k)
		if err != nil {
			t.Fatalf("hpke.NewDHKEMPrivateKey: %v", err)
		}
		kdf := hpke.HKDFSHA256()
		if curve == ecdh.P384() {
			kdf = hpke.HKDFSHA384()
		}
		pub, err := hpke.NewDHKEMPublicKey(k.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		info := []byte("twoway-hsm tpm2 test")
		msg := []byte("a secret request")
		ct, err := hpke.Seal(pub, kdf, hpke.AES128GCM(), info, msg)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := hpke.Open(priv, kdf, hpke.AES128GCM(), info, ct)
		if err != nil {
			t.Fatalf("hpke.Open with TPM key: %v", err)
		}
		if !bytes.Equal(pt, msg) {
			t.Fatalf("got %q", pt)
		}
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	k, err := tp.CreateKey(ctx, ecdh.P256(), WithAuth([]byte("pw")))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteKeyFile(path); err == nil {
		t.Fatal("WriteKeyFile overwrote an existing file")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("-----BEGIN TSS2 PRIVATE KEY-----")) {
		t.Fatalf("not a TSS2 PEM file:\n%s", b)
	}
	pub := k.PublicKeyBytes()
	k.Close()

	k2, err := tp.LoadKeyFile(ctx, path, WithAuth([]byte("pw")))
	if err != nil {
		t.Fatal(err)
	}
	closeKey(t, k2)
	if !bytes.Equal(k2.PublicKeyBytes(), pub) {
		t.Fatal("reloaded key has another public key")
	}
	checkECDH(t, ctx, k2)
}

func TestBadPeerPoint(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	k := createKey(t, tp, ecdh.P256())
	good := softwarePeer(t, ecdh.P256()).PublicKey().Bytes()
	offCurve := bytes.Clone(good)
	offCurve[64] ^= 1
	infinity := make([]byte, 65)
	infinity[0] = 4
	for name, peer := range map[string][]byte{
		"off-curve":    offCurve,
		"infinity":     infinity,
		"single zero":  {0},
		"empty":        nil,
		"short":        good[:64],
		"long":         append(bytes.Clone(good), 0),
		"compressed":   append([]byte{2}, good[1:33]...),
		"wrong prefix": append([]byte{5}, good[1:]...),
		"P-384 point":  softwarePeer(t, ecdh.P384()).PublicKey().Bytes(),
	} {
		_, err := k.ECDHContext(ctx, peer)
		if !errors.Is(err, kem.ErrInvalidPublicKey) {
			t.Errorf("%s: err = %v, want kem.ErrInvalidPublicKey", name, err)
		}
	}
	// ECDH (crypto/ecdh) with a key on another curve.
	if _, err := k.ECDH(softwarePeer(t, ecdh.P384()).PublicKey()); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Errorf("ECDH(P-384 peer) err = %v", err)
	}
	// The TPM itself rejects an off-curve point (TPM_RC_ECC_POINT), should
	// one slip past the software check.
	_, err := k.ecdh(ctx, offCurve)
	if !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Fatalf("TPM with off-curve point: err = %v, want kem.ErrInvalidPublicKey", err)
	}
	t.Logf("TPM verdict: %v", err)
	// The key still works.
	checkECDH(t, ctx, k)
}
