package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
)

// SoftHSMToken is a freshly initialised SoftHSM2 token in a test's own
// temporary directory, with random PINs.
type SoftHSMToken struct {
	// ModulePath is the SoftHSM2 PKCS#11 module.
	ModulePath string
	// Env is the isolated SoftHSM2 configuration the token lives in; its
	// ConfPath is in SOFTHSM2_CONF for the duration of the test.
	Env *softhsm.Env
	// TokenLabel and Serial identify the token (RFC 7512 token= and
	// serial=).
	TokenLabel string
	Serial     string
	// PIN is the user PIN, SOPIN the security officer PIN.
	PIN   string
	SOPIN string
	// PINFile holds PIN followed by a newline, mode 0600.
	PINFile string
}

// SoftHSM gives the test a new SoftHSM2 token in t.TempDir(), removed when
// the test ends. It sets SOFTHSM2_CONF with t.Setenv, so tests that use it
// cannot call t.Parallel: SoftHSM reads SOFTHSM2_CONF once per
// C_Initialize, so one process sees one configuration at a time. Every
// Module or Token the test opens must be closed before the test ends (use
// t.Cleanup), or the next test's token cannot be made.
//
// Without SoftHSM2 the test is skipped, or fails when TWOWAY_HSM_REQUIRED=1.
func SoftHSM(t testing.TB) *SoftHSMToken {
	t.Helper()
	module, err := softhsm.FindModule("")
	if err != nil {
		Unavailable(t, err.Error())
	}
	dir := t.TempDir()
	if softhsm.CheckDir(dir) != nil {
		// t.TempDir() follows the test name: "#01" for a repeated subtest
		// name, "=" from "name=value" subtests; softhsm2.conf cannot say
		// either.
		d, err := os.MkdirTemp("", "twoway-softhsm-")
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	env, err := softhsm.NewEnv(dir)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Setenv(softhsm.ConfEnv, env.ConfPath)
	return newToken(t, module, env)
}

// AddToken initialises another token in the same configuration, with its
// own label and PINs but the same module and Env. Like SoftHSM, it needs
// every Module of the test closed at the time.
func (s *SoftHSMToken) AddToken(t testing.TB) *SoftHSMToken {
	t.Helper()
	return newToken(t, s.ModulePath, s.Env)
}

// newToken initialises a token with a random label and PINs in env and
// writes its user PIN to LABEL.pin in env.Dir.
func newToken(t testing.TB, module string, env *softhsm.Env) *SoftHSMToken {
	t.Helper()
	s := &SoftHSMToken{ModulePath: module, Env: env}
	s.TokenLabel, s.PIN, s.SOPIN = "tw-"+randomHex(t, 6), randomHex(t, 8), randomHex(t, 8)
	tok, err := env.InitToken(module, s.TokenLabel, s.SOPIN, s.PIN)
	if err != nil {
		t.Fatalf("testenv: initialise SoftHSM2 token: %v", err)
	}
	s.Serial = tok.Serial
	s.PINFile = filepath.Join(env.Dir, s.TokenLabel+".pin")
	if err := os.WriteFile(s.PINFile, []byte(s.PIN+"\n"), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return s
}

// URI returns an RFC 7512 URI for the token with the given extra path
// attributes (already percent-encoded, e.g. "id=%01", "object=k1"), the
// module path and the PIN file as pin-source:
//
//	pkcs11:token=tw-...;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/tmp/.../tw-....pin
func (s *SoftHSMToken) URI(pathAttrs ...string) string {
	return s.uri(pathAttrs, "pin-source=file:"+escapeQuery(s.PINFile))
}

// URIWithoutPIN is URI without any PIN attribute.
func (s *SoftHSMToken) URIWithoutPIN(pathAttrs ...string) string {
	return s.uri(pathAttrs, "")
}

// KeyURI returns URI("id=<id>", "object=<label>"), leaving out what is
// empty.
func (s *SoftHSMToken) KeyURI(id []byte, label string) string {
	var attrs []string
	if len(id) > 0 {
		attrs = append(attrs, "id="+pctEncode(id))
	}
	if label != "" {
		attrs = append(attrs, "object="+escapeQuery(label))
	}
	return s.URI(attrs...)
}

// Environ returns the environment entries a child process (a plugin) needs
// to see the token.
func (s *SoftHSMToken) Environ() []string { return s.Env.Environ() }

func (s *SoftHSMToken) uri(pathAttrs []string, pin string) string {
	path := append([]string{"token=" + escapeQuery(s.TokenLabel)}, pathAttrs...)
	q := "module-path=" + escapeQuery(s.ModulePath)
	if pin != "" {
		q += "&" + pin
	}
	return "pkcs11:" + strings.Join(path, ";") + "?" + q
}

// escapeQuery percent-encodes a query value for RFC 7512, keeping
// unreserved characters and '/' and ':' readable.
func escapeQuery(v string) string {
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/:", c) >= 0 {
			sb.WriteByte(c)
			continue
		}
		sb.WriteString(pctEncode([]byte{c}))
	}
	return sb.String()
}

// pctEncode percent-encodes every byte of b, as RFC 7512 ids are written.
func pctEncode(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%%%02X", c)
	}
	return sb.String()
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return hex.EncodeToString(b)
}
