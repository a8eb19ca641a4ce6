package pkcs11_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/cloudflare/circl/dh/x448"
	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// openToken gives the test a fresh SoftHSM2 token, opened and logged in.
func openToken(t testing.TB, opts ...pkcs11.Option) (*testenv.SoftHSMToken, *pkcs11.Token) {
	t.Helper()
	sh := testenv.SoftHSM(t)
	tok, err := pkcs11.OpenToken(context.Background(), sh.URI(), opts...)
	if err != nil {
		t.Fatalf("OpenToken: %v", err)
	}
	t.Cleanup(func() {
		if err := tok.Close(); err != nil {
			t.Errorf("Token.Close: %v", err)
		}
	})
	return sh, tok
}

// rawSession opens a logged-in session with plain miekg/pkcs11 calls on the
// same module, for arranging things behind the backend's back. It is closed
// at cleanup.
func rawSession(t testing.TB, sh *testenv.SoftHSMToken, tok *pkcs11.Token) (*p11.Ctx, p11.SessionHandle) {
	t.Helper()
	c := pkcs11.RawCtx(tok)
	s, err := c.OpenSession(tok.Info().SlotID, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatalf("raw OpenSession: %v", err)
	}
	if err := c.Login(s, p11.CKU_USER, sh.PIN); err != nil && err != p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN) {
		t.Fatalf("raw Login: %v", err)
	}
	t.Cleanup(func() { c.CloseSession(s) })
	return c, s
}

// findPrivate finds, on a raw session, the one private key object with
// CKA_ID id.
func findPrivate(t testing.TB, c *p11.Ctx, s p11.SessionHandle, id []byte) p11.ObjectHandle {
	t.Helper()
	if err := c.FindObjectsInit(s, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_ID, id),
	}); err != nil {
		t.Fatal(err)
	}
	hs, _, err := c.FindObjects(s, 2)
	c.FindObjectsFinal(s)
	if err != nil || len(hs) != 1 {
		t.Fatalf("found %d private keys with id %x: %v", len(hs), id, err)
	}
	return hs[0]
}

// dhCurves are the curves a test loops over; X448 has no crypto/ecdh curve.
var dhCurves = []struct {
	name string
	kem  kem.ID
	ecdh ecdh.Curve
}{
	{"P-256", kem.DHKEMP256HKDFSHA256, ecdh.P256()},
	{"P-384", kem.DHKEMP384HKDFSHA384, ecdh.P384()},
	{"P-521", kem.DHKEMP521HKDFSHA512, ecdh.P521()},
	{"X25519", kem.DHKEMX25519HKDFSHA256, ecdh.X25519()},
	{"X448", kem.DHKEMX448HKDFSHA512, nil},
}

// softwarePeer makes an ephemeral peer key on the curve and returns its
// public key bytes and a function computing the peer's side of the
// exchange with the token key's public bytes.
func softwarePeer(t testing.TB, c ecdh.Curve) (pub []byte, agree func(tokenPub []byte) []byte) {
	t.Helper()
	if c == nil { // X448
		var sk, pk x448.Key
		rand.Read(sk[:])
		x448.KeyGen(&pk, &sk)
		return pk[:], func(tp []byte) []byte {
			var out, peer x448.Key
			copy(peer[:], tp)
			if !x448.Shared(&out, &sk, &peer) {
				t.Fatal("x448.Shared failed")
			}
			return out[:]
		}
	}
	priv, err := c.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv.PublicKey().Bytes(), func(tp []byte) []byte {
		p, err := c.NewPublicKey(tp)
		if err != nil {
			t.Fatalf("token public key: %v", err)
		}
		z, err := priv.ECDH(p)
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
}

// checkECDH runs one exchange with k (on curve c, nil for X448) and checks
// the secret against software.
func checkECDH(t testing.TB, k *pkcs11.Key, c ecdh.Curve) {
	t.Helper()
	peer, agree := softwarePeer(t, c)
	z, err := k.ECDHContext(context.Background(), peer)
	if err != nil {
		t.Fatalf("%s: %v", k.URI(), err)
	}
	if !bytes.Equal(z, agree(k.PublicKeyBytes())) {
		t.Fatalf("%s: wrong secret", k.URI())
	}
}

// assertNoSecret fails when an error message contains one of the secrets.
func assertNoSecret(t testing.TB, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error message leaks a secret: %q", err.Error())
		}
	}
}
