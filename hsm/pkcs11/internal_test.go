package pkcs11

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/dh/x448"
	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// TestLowOrderTables checks the small-order tables against independent
// implementations: every listed u makes crypto/ecdh's X25519 and circl's
// X448 produce the all-zero output (which both reject), and random points
// are not listed.
func TestLowOrderTables(t *testing.T) {
	if len(curveX25519.lowOrder) != 7 || len(curveX448.lowOrder) != 5 {
		t.Fatalf("tables have %d and %d entries", len(curveX25519.lowOrder), len(curveX448.lowOrder))
	}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for _, u := range curveX25519.lowOrder {
		pub, err := ecdh.X25519().NewPublicKey(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := priv.ECDH(pub); err == nil {
			t.Errorf("crypto/ecdh accepts X25519 u=%x, which is listed as small order", u)
		}
	}
	var sk x448.Key
	rand.Read(sk[:])
	for _, u := range curveX448.lowOrder {
		var out, pk x448.Key
		copy(pk[:], u)
		if x448.Shared(&out, &sk, &pk) {
			t.Errorf("circl accepts X448 u=%x, which is listed as small order", u)
		}
	}
	for range 100 {
		p, _ := ecdh.X25519().GenerateKey(rand.Reader)
		if curveX25519.isLowOrder(p.PublicKey().Bytes()) {
			t.Fatal("a random X25519 key is listed as small order")
		}
	}
}

func TestRawPoint(t *testing.T) {
	for _, c := range curves {
		pub := make([]byte, c.pubLen)
		rand.Read(pub)
		if !c.montgomery {
			pub[0] = 4
		}
		raw, ok := c.rawPoint(pub)
		if !ok || !bytes.Equal(raw, pub) {
			t.Fatalf("%s raw", c.name)
		}
		raw, ok = c.rawPoint(wrapOctetString(pub))
		if !ok || !bytes.Equal(raw, pub) {
			t.Fatalf("%s wrapped", c.name)
		}
		if _, ok := c.rawPoint(append(wrapOctetString(pub), 0)); ok {
			t.Fatalf("%s: trailing data accepted", c.name)
		}
		if _, ok := c.rawPoint(pub[1:]); ok {
			t.Fatalf("%s: short point accepted", c.name)
		}
	}
}

func TestNormalizeSecret(t *testing.T) {
	v, err := curveP521.normalizeSecret([]byte{1, 2, 3})
	if err != nil || len(v) != 66 || v[63] != 1 || v[65] != 3 || v[0] != 0 {
		t.Fatalf("left padding: %x %v", v, err)
	}
	if _, err := curveP256.normalizeSecret(make([]byte, 32)); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Fatalf("all-zero secret: %v", err)
	}
	if _, err := curveX25519.normalizeSecret(make([]byte, 32)); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Fatalf("all-zero X25519 secret: %v", err)
	}
	if _, err := curveX25519.normalizeSecret(make([]byte, 31)); err == nil {
		t.Fatal("short X25519 secret accepted")
	}
	if _, err := curveP256.normalizeSecret(make([]byte, 33)); err == nil {
		t.Fatal("long secret accepted")
	}
}

func TestCurveFromParams(t *testing.T) {
	ckkEC := uint(3)
	printable := func(s string) []byte { return append([]byte{0x13, byte(len(s))}, s...) }
	for _, tc := range []struct {
		kt     uint
		params []byte
		want   *curve
		errHas string
	}{
		{ckkEC, curveP256.params, curveP256, ""},
		{ckkEC, curveP521.params, curveP521, ""},
		{ckkECMontgomery, curveX25519.params, curveX25519, ""},
		{ckkECMontgomery, printable("curve25519"), curveX25519, ""},
		{ckkECEdwards, curveX448.params, curveX448, ""},
		{ckkECMontgomery, printable("curve448"), curveX448, ""},
		{ckkEC, curveX25519.params, nil, "CKK_EC but"},
		{ckkECEdwards, curveP256.params, nil, "CKK_EC_EDWARDS but"},
		{ckkECEdwards, printable("edwards25519"), nil, "edwards25519"},
		{0, curveP256.params, nil, "CKK_RSA"},
		{ckkEC, []byte{0x30, 0x00}, nil, "explicit"},
		{ckkEC, []byte{0x06}, nil, "not valid DER"},
	} {
		got, err := curveFromParams(tc.kt, tc.params)
		if got != tc.want || (tc.errHas == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("curveFromParams(%d, %x) = %v, %v", tc.kt, tc.params, got, err)
		}
		if err != nil && !errors.Is(err, ErrUnsupportedKeyType) {
			t.Errorf("error %v does not wrap ErrUnsupportedKeyType", err)
		}
	}
}

func TestParseURI(t *testing.T) {
	u, err := ParseURI("pkcs11:token=gw%20one;serial=abc;slot-id=3;id=%01%ff;object=k1;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if u.Token.Label != "gw one" || u.Token.Serial != "abc" || u.Token.SlotID == nil || *u.Token.SlotID != 3 ||
		!bytes.Equal(u.Key.ID, []byte{1, 0xff}) || u.Key.Label != "k1" || u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" ||
		!u.HasPINValue || u.pinValue != "s3cret" {
		t.Fatalf("parsed %+v", u)
	}
	s := u.String()
	if strings.Contains(s, "s3cret") || strings.Contains(s, "pin-value") {
		t.Fatalf("String leaks the pin-value: %s", s)
	}
	if s != "pkcs11:token=gw%20one;serial=abc;slot-id=3;id=%01%FF;object=k1?module-path=/usr/lib/softhsm/libsofthsm2.so" {
		t.Fatalf("String() = %s", s)
	}
	// String round-trips.
	u2, err := ParseURI(s)
	if err != nil || u2.String() != s {
		t.Fatalf("round trip: %v %s", err, u2)
	}
	if r := RedactURI("pkcs11:token=x?pin-value=hunter2"); strings.Contains(r, "hunter2") {
		t.Fatalf("RedactURI: %s", r)
	}
	if r := RedactURI("pkcs11:token=x;;?pin-value=hunter2"); strings.Contains(r, "hunter2") {
		t.Fatalf("RedactURI of a bad URI: %s", r)
	}
	for _, bad := range []string{
		"pkcs11:slot-id=x",
		"pkcs11:token=a;token=b",
		"pkcs11:type=cert",
		"pkcs11:?module-path=relative/lib.so",
		"pkcs11:?pin-value=1&pin-source=/x",
		"http://x",
	} {
		if _, err := ParseURI(bad); !errors.Is(err, ErrInvalidURI) {
			t.Errorf("ParseURI(%q): %v", bad, err)
		}
	}
	if _, err := ParseURI("pkcs11:token=x?pin-value=%zzhunter2"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad pin-value escape: %v", err)
	}
}

func TestPINFromSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	crlf := write("crlf", "1234\r\n")
	plain := write("plain", "5678")
	twoLines := write("two", "abcd\n\n")
	for src, want := range map[string]string{
		crlf: "1234", "file:" + plain: "5678", "file://" + plain: "5678", "file://localhost" + plain: "5678", twoLines: "abcd\n",
	} {
		got, err := pinFromSource(src)
		if err != nil || got != want {
			t.Errorf("pinFromSource(%q) = %q, %v; want %q", src, got, err, want)
		}
	}
	big := write("big", strings.Repeat("x", 5000))
	for _, src := range []string{filepath.Join(dir, "none"), dir, write("empty", ""), big, "file://remote.example/pin", "env:TWOWAY_TEST_UNSET_PIN", "env:", "https://example.invalid/pin", ""} {
		if _, err := pinFromSource(src); !errors.Is(err, ErrPINSource) {
			t.Errorf("pinFromSource(%q): %v", src, err)
		}
	}
}

// TestSessionWaitHonoursContext fills the pool and checks that a waiting
// ECDH returns when its context ends, and that ECDH has a bounded default.
func TestSessionWaitHonoursContext(t *testing.T) {
	for _, abandon := range []bool{false, true} {
		t.Run(fmt.Sprintf("abandon=%v", abandon), func(t *testing.T) { testSessionWait(t, abandon) })
	}
}

func testSessionWait(t *testing.T, abandon bool) {
	sh := testenv.SoftHSM(t)
	tok, err := OpenToken(context.Background(), sh.URI(), WithPoolSize(1), WithTimeout(100*time.Millisecond), WithAbandonOnCancel(abandon))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	k, err := tok.GenerateKey(context.Background(), kem.DHKEMP256HKDFSHA256, KeyRef{ID: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Info().PoolSize != 1 {
		t.Fatalf("pool size %d", tok.Info().PoolSize)
	}
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	// Hold the only session.
	if err := tok.pool.acquire(context.Background(), tok.done); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = k.ECDHContext(ctx, peer.PublicKey().Bytes())
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("ECDHContext with a full pool: %v after %v", err, time.Since(start))
	}
	_, err = k.ECDH(peer.PublicKey())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ECDH with a full pool: %v", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := k.ECDHContext(cctx, peer.PublicKey().Bytes()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	tok.pool.release()
	if _, err := k.ECDHContext(cctx, peer.PublicKey().Bytes()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context, free pool: %v", err)
	}
	if _, err := k.ECDH(peer.PublicKey()); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// TestCloseSessionOnlyIfOwner: a session whose number the module has
// handed out again (it died, and another session now holds the number) is
// forgotten, never closed. The module context is nil: a C_CloseSession
// call would panic.
func TestCloseSessionOnlyIfOwner(t *testing.T) {
	stale := &session{h: 5}
	current := &session{h: 5}
	st := &moduleState{owners: map[p11.SessionHandle]*session{5: current}}
	if st.closeSession(stale) {
		t.Fatal("closed a session number that another session owns")
	}
	st.forgetSession(stale)
	if st.owners[5] != current {
		t.Fatal("a stale session's forget dropped the current owner")
	}
}

// TestRecoveryClosesLiveSessions closes one of a Token's sessions behind
// its back, as a network HSM that times one session out does. The Token
// recovers, and every session it had before is closed afterwards: the idle
// ones the recovery drained, and the one an operation held across the
// recovery, once it is put back. Abandoning them instead (as this package
// once did) leaks up to the pool's size per recovery, until a module with a
// session limit refuses new ones.
func TestRecoveryClosesLiveSessions(t *testing.T) {
	sh := testenv.SoftHSM(t)
	ctx := context.Background()
	tok, err := OpenToken(ctx, sh.URI(), WithPoolSize(4))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	k, err := tok.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, KeyRef{ID: []byte{0x71}})
	if err != nil {
		t.Fatal(err)
	}
	peerKey, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peer := peerKey.PublicKey().Bytes()
	if _, err := k.ECDHContext(ctx, peer); err != nil {
		t.Fatal(err)
	}
	// Four sessions: three idle in the pool, one held by an "operation"
	// across the recovery.
	var old []*session
	for range 4 {
		s, err := tok.getSession(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, s)
	}
	held := old[3]
	for _, s := range old[:3] {
		tok.putSession(s, nil)
	}
	// The next operation takes the last session put back (the pool is a
	// stack): that one dies.
	c := tok.mod.st.ctx
	victim := old[2]
	if err := c.CloseSession(victim.h); err != nil {
		t.Fatal(err)
	}
	gen := tok.gen.Load()
	if _, err := k.ECDHContext(ctx, peer); err != nil {
		t.Fatalf("ECDH after a session died: %v", err)
	}
	if tok.gen.Load() == gen {
		t.Fatal("the dead session caused no recovery")
	}
	tok.putSession(held, nil)
	var open []p11.SessionHandle
	for _, s := range old {
		if _, err := c.GetSessionInfo(s.h); err == nil {
			open = append(open, s.h)
		}
	}
	if len(open) > 0 {
		t.Fatalf("sessions from before the recovery still open: %v", open)
	}
	if _, err := k.ECDHContext(ctx, peer); err != nil {
		t.Fatalf("ECDH after the recovery: %v", err)
	}
}
