package pkcs11_test

import (
	"context"
	"crypto/ecdh"
	"errors"
	"log/slog"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/internal/syncbuf"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// TestRecovery pulls sessions, the login or the whole module from under
// the backend with raw PKCS#11 calls; the next ECDH must still succeed.
func TestRecovery(t *testing.T) {
	cases := []struct {
		name    string
		disrupt func(t *testing.T, c *p11.Ctx, tok *pkcs11.Token, s p11.SessionHandle)
	}{
		{"CloseAllSessions", func(t *testing.T, c *p11.Ctx, tok *pkcs11.Token, _ p11.SessionHandle) {
			if err := c.CloseAllSessions(tok.Info().SlotID); err != nil {
				t.Fatal(err)
			}
		}},
		{"Logout", func(t *testing.T, c *p11.Ctx, _ *pkcs11.Token, s p11.SessionHandle) {
			if err := c.Logout(s); err != nil {
				t.Fatal(err)
			}
		}},
		{"Finalize", func(t *testing.T, c *p11.Ctx, _ *pkcs11.Token, _ p11.SessionHandle) {
			if err := c.Finalize(); err != nil {
				t.Fatal(err)
			}
		}},
		{"Finalize+Initialize", func(t *testing.T, c *p11.Ctx, _ *pkcs11.Token, _ p11.SessionHandle) {
			if err := c.Finalize(); err != nil {
				t.Fatal(err)
			}
			if err := c.Initialize(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			sh, tok := openToken(t, pkcs11.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))), pkcs11.WithPoolSize(2))
			ctx := context.Background()
			keys := map[string]*pkcs11.Key{}
			for i, c := range dhCurves[:4] {
				k, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: []byte{0x60, byte(i)}})
				if err != nil {
					t.Fatal(err)
				}
				keys[c.name] = k
			}
			check := func() {
				t.Helper()
				for _, c := range dhCurves[:4] {
					checkECDH(t, keys[c.name], c.ecdh)
				}
			}
			check()
			c := pkcs11.RawCtx(tok)
			// A raw session of our own, logged in, as another user of the
			// module would have.
			s, err := c.OpenSession(tok.Info().SlotID, p11.CKF_SERIAL_SESSION)
			if err != nil {
				t.Fatal(err)
			}
			tc.disrupt(t, c, tok, s)
			check()
			check()
			// Keys found after the recovery work too.
			if _, err := tok.FindKey(ctx, pkcs11.KeyRef{ID: []byte{0x60, 0}}); err != nil {
				t.Fatal(err)
			}
			out := logs.String()
			if !strings.Contains(out, "recovering") {
				t.Errorf("no recovery logged:\n%s", out)
			}
			if strings.Contains(out, sh.PIN) {
				t.Fatal("log leaks the PIN")
			}
			t.Logf("log:\n%s", out)
		})
	}
}

// TestRecoveryGivesUp bounds the retries.
func TestRecoveryGivesUp(t *testing.T) {
	sh, tok := openToken(t, pkcs11.WithMaxRetries(0))
	ctx := context.Background()
	k, err := tok.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	c := pkcs11.RawCtx(tok)
	if err := c.CloseAllSessions(tok.Info().SlotID); err != nil {
		t.Fatal(err)
	}
	peer, _ := softwarePeer(t, ecdh.P256())
	_, err = k.ECDHContext(ctx, peer)
	wantErr(t, err, pkcs11.ErrTokenUnavailable, "CKR_SESSION_HANDLE_INVALID", "1 attempts")
	assertNoSecret(t, err, sh.PIN)
	if !errors.Is(err, p11.Error(p11.CKR_SESSION_HANDLE_INVALID)) {
		t.Fatalf("error does not carry the PKCS#11 code: %v", err)
	}
	// The call that gave up still recovered the Token: the next one works.
	if _, err := k.ECDHContext(ctx, peer); err != nil {
		t.Fatalf("the call after giving up: %v", err)
	}
	tok2, err := pkcs11.OpenToken(ctx, sh.URI())
	if err != nil {
		t.Fatal(err)
	}
	tok2.Close()
}

// TestRecoveryAcrossTokens has two Tokens on one token (one module) and
// finalises the module behind their back. The first Token to notice
// initialises the module again; the other must then recover too, rather
// than run on session and object handles that the new initialisation hands
// out again, to other sessions and other keys.
func TestRecoveryAcrossTokens(t *testing.T) {
	var logsB syncbuf.Buffer
	// B opens its first session first: A's first session after the new
	// initialisation gets B's old session number.
	sh, tokB := openToken(t, pkcs11.WithLogger(slog.New(slog.NewTextHandler(&logsB, nil))))
	ctx := context.Background()
	tokA, err := pkcs11.OpenToken(ctx, sh.URI())
	if err != nil {
		t.Fatal(err)
	}
	defer tokA.Close()
	kB, err := tokB.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: []byte{0xb}})
	if err != nil {
		t.Fatal(err)
	}
	kA, err := tokA.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: []byte{0xa}})
	if err != nil {
		t.Fatal(err)
	}
	checkECDH(t, kA, ecdh.P256())
	checkECDH(t, kB, ecdh.P256())
	if err := pkcs11.RawCtx(tokA).Finalize(); err != nil {
		t.Fatal(err)
	}
	checkECDH(t, kA, ecdh.P256()) // A initialises the module again
	checkECDH(t, kB, ecdh.P256())
	checkECDH(t, kA, ecdh.P256())
	if !strings.Contains(logsB.String(), "token recovered") {
		t.Fatalf("the second Token did not recover:\n%s", logsB.String())
	}
}
