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

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

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

// TestResolvePIN: pin-source and WithPINFile are read by keystore/secret
// (4 KiB bound, one trailing line break removed, file: URLs, env:), and
// every failure wraps ErrPINSource without the PIN.
func TestResolvePIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("TWOWAY_TEST_PIN", "env-pin")
	crlf := write("crlf", "1234\r\n")
	plain := write("plain", "5678")
	twoLines := write("two", "abcd\n\n")
	for src, want := range map[string]string{
		crlf: "1234", "file:" + plain: "5678", "file://" + plain: "5678", "file://localhost" + plain: "5678",
		twoLines: "abcd\n", "env:TWOWAY_TEST_PIN": "env-pin",
	} {
		got, ok, err := resolvePIN(&options{}, &URI{PINSource: src})
		if err != nil || !ok || got != want {
			t.Errorf("pin-source %q: %q, %v, %v; want %q", src, got, ok, err, want)
		}
		got, _, err = resolvePIN(&options{pinFile: src}, &URI{PINSource: "env:TWOWAY_TEST_UNSET_PIN"})
		if err != nil || got != want {
			t.Errorf("WithPINFile(%q): %q, %v; want %q (the option wins over the URI)", src, got, err, want)
		}
	}
	big := write("big", strings.Repeat("x", 5000))
	for _, src := range []string{filepath.Join(dir, "none"), dir, write("empty", ""), write("newline", "\n"), big,
		"file://remote.example/pin", "env:TWOWAY_TEST_UNSET_PIN", "env:", "https://example.invalid/pin"} {
		_, ok, err := resolvePIN(&options{}, &URI{PINSource: src})
		if !ok || !errors.Is(err, ErrPINSource) {
			t.Errorf("pin-source %q: %v, want ErrPINSource", src, err)
		}
		if err != nil && strings.Contains(err.Error(), "xxxx") {
			t.Errorf("pin-source %q: the error quotes the file: %v", src, err)
		}
	}
	if _, ok, err := resolvePIN(&options{}, &URI{}); ok || err != nil {
		t.Errorf("no source: ok %v, err %v", ok, err)
	}
}

// TestParseURIUnknownAttributes: an attribute RFC 7512 does not define is
// an error naming it, never ignored (a typo must not select another token
// or key); x- vendor attributes are accepted; module-name is refused with
// a message that says what to give instead.
func TestParseURIUnknownAttributes(t *testing.T) {
	for uri, want := range map[string]string{
		"pkcs11:tokn=nosuchtoken;id=%01":                   `unknown path attribute "tokn"`,
		"pkcs11:token=gw;id=%01?pin-sorce=file:/etc/pin":   `unknown query attribute "pin-sorce"`,
		"pkcs11:token=gw;objet=k1":                         `unknown path attribute "objet"`,
		"pkcs11:token=gw?modul-path=/usr/lib/x.so":         `unknown query attribute "modul-path"`,
		"pkcs11:token=gw;module-path=/usr/lib/x.so":        "module-path belongs in the query",
		"pkcs11:token=gw?id=%01":                           "id belongs in the path",
		"pkcs11:token=gw?module-name=softhsm2":             "module-name= is not supported",
		"pkcs11:token=gw;library-version=x":                "library-version",
		"pkcs11:token=gw;library-version=1.300":            "library-version",
		"pkcs11:token=gw;Token=x":                          "not a name",
		"pkcs11:token=gw;id=%01?pin-value=s3cret&pin-sorc": "not name=value",
	} {
		_, err := ParseURI(uri)
		if !errors.Is(err, ErrInvalidURI) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURI(%q): %v; want ErrInvalidURI saying %q", uri, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseURI(%q): the error shows the pin-value: %v", uri, err)
		}
	}
	u, err := ParseURI("pkcs11:token=gw;x-vendor-slot=7;id=%01;library-version=2.6?x-retries=3&module-path=/usr/lib/x.so")
	if err != nil {
		t.Fatalf("vendor attributes: %v", err)
	}
	if u.Token.Label != "gw" || u.Token.LibraryVersion != "2.6" || u.ModulePath != "/usr/lib/x.so" {
		t.Errorf("parsed %+v", u)
	}
	if s := u.String(); s != "pkcs11:token=gw;library-version=2.6;id=%01?module-path=/usr/lib/x.so" {
		t.Errorf("String() = %s", s)
	}
	// Every attribute RFC 7512 defines is accepted.
	all := "pkcs11:token=t;manufacturer=m;serial=s;model=mo;library-manufacturer=lm;library-description=ld;library-version=1;" +
		"object=o;type=private;id=%01;slot-description=sd;slot-manufacturer=sm;slot-id=1?pin-source=file:/p&module-path=/m.so"
	if _, err := ParseURI(all); err != nil {
		t.Errorf("ParseURI(%q): %v", all, err)
	}
	if r := RedactURI("pkcs11:tokn=x?pin-value=hunter2"); strings.Contains(r, "hunter2") || r != "pkcs11:tokn=x" {
		t.Errorf("RedactURI of a URI with an unknown attribute: %q", r)
	}
	for v, want := range map[string]string{"1": "1.0", "2.6": "2.6", "0.255": "0.255"} {
		got, err := parseVersion(v)
		if err != nil || fmt.Sprintf("%d.%d", got.Major, got.Minor) != want {
			t.Errorf("parseVersion(%q) = %v, %v; want %s", v, got, err, want)
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

// TestDefaultModule: without module-path the module is p11-kit's proxy,
// found in any architecture's directory, and never SoftHSM2; without the
// proxy the error says to add module-path=. The path is reported as
// found, not with its symlinks resolved.
func TestDefaultModule(t *testing.T) {
	sh := testenv.SoftHSM(t)
	saved := proxyModules
	t.Cleanup(func() { proxyModules = saved })

	dir := t.TempDir()
	proxyModules = []string{filepath.Join(dir, "lib", "*-linux-gnu*", "p11-kit-proxy.so")}
	_, err := DefaultModulePath()
	if !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), "module-path=") || !strings.Contains(err.Error(), "p11-kit") {
		t.Fatalf("DefaultModulePath without a proxy: %v", err)
	}
	_, err = OpenToken(context.Background(), sh.URIWithoutPIN()[:strings.Index(sh.URIWithoutPIN(), "?")], WithPIN(sh.PIN))
	if !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), "module-path=") {
		t.Fatalf("OpenToken without module-path or proxy: %v (SoftHSM2 must not be a default)", err)
	}

	// A stand-in proxy (a symlink to SoftHSM2) in an aarch64 directory.
	arch := filepath.Join(dir, "lib", "aarch64-linux-gnu")
	if err := os.MkdirAll(arch, 0o755); err != nil {
		t.Fatal(err)
	}
	proxy := filepath.Join(arch, "p11-kit-proxy.so")
	if err := os.Symlink(sh.ModulePath, proxy); err != nil {
		t.Fatal(err)
	}
	if p, err := DefaultModulePath(); err != nil || p != proxy {
		t.Fatalf("DefaultModulePath = %q, %v; want %q", p, err, proxy)
	}
	tok, err := OpenToken(context.Background(), "pkcs11:token="+sh.TokenLabel, WithPIN(sh.PIN))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if got := tok.Info().ModulePath; got != proxy {
		t.Errorf("ModulePath = %q, want the default as found, %q", got, proxy)
	}
}

// TestModulePathAsGiven: a module named under two paths (a symlink and
// its target) is loaded once, and each Token reports the path it was
// given, so that references print one path, the caller's.
func TestModulePathAsGiven(t *testing.T) {
	sh := testenv.SoftHSM(t)
	link := filepath.Join(t.TempDir(), "libsofthsm2-link.so")
	if err := os.Symlink(sh.ModulePath, link); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(sh.ModulePath)
	if err != nil {
		t.Fatal(err)
	}
	var toks []*Token
	for _, p := range []string{link, real, sh.ModulePath} {
		tok, err := OpenToken(context.Background(), sh.URIWithoutPIN(), WithModulePath(p), WithPIN(sh.PIN))
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		if got := tok.Info().ModulePath; got != p {
			t.Errorf("opened as %s: ModulePath = %s", p, got)
		}
		toks = append(toks, tok)
	}
	if toks[0].mod.st != toks[1].mod.st || toks[1].mod.st != toks[2].mod.st {
		t.Error("one library under three paths was loaded more than once")
	}
	_, err = OpenToken(context.Background(), "pkcs11:token=no-such-token", WithModulePath(link), WithPIN(sh.PIN))
	if !errors.Is(err, ErrTokenNotFound) || !strings.Contains(err.Error(), link) || strings.Contains(err.Error(), real) {
		t.Errorf("token not found via %s: %v; want the path as given", link, err)
	}
}
