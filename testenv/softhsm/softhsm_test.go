package softhsm_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
)

func findModule(t *testing.T) string {
	t.Helper()
	m, err := softhsm.FindModule("")
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	return m
}

func TestFindModule(t *testing.T) {
	m := findModule(t)
	if !filepath.IsAbs(m) {
		t.Fatalf("FindModule = %q", m)
	}
	t.Logf("found %s; candidates %v", m, softhsm.CandidatePaths())
	if got, err := softhsm.FindModule(m); err != nil || got != m {
		t.Fatalf("explicit path: %q %v", got, err)
	}
	if _, err := softhsm.FindModule("/nonexistent/libsofthsm2.so"); !errors.Is(err, softhsm.ErrNotFound) {
		t.Fatalf("explicit missing path: %v", err)
	}
	t.Setenv(softhsm.ModuleEnv, "/nonexistent/env/libsofthsm2.so")
	if _, err := softhsm.FindModule(""); !errors.Is(err, softhsm.ErrNotFound) || !strings.Contains(err.Error(), softhsm.ModuleEnv) {
		t.Fatalf("missing $%s: %v", softhsm.ModuleEnv, err)
	}
	t.Setenv(softhsm.ModuleEnv, m)
	if got, err := softhsm.FindModule(""); err != nil || got != m {
		t.Fatalf("$%s: %q %v", softhsm.ModuleEnv, got, err)
	}
}

func TestEnvAndInitToken(t *testing.T) {
	m := findModule(t)
	env, err := softhsm.NewEnv(filepath.Join(t.TempDir(), "hsm"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(env.ConfPath)
	if err != nil || !strings.Contains(string(conf), "directories.tokendir = "+env.TokenDir) {
		t.Fatalf("conf %q %v", conf, err)
	}
	if got := env.Environ(); len(got) != 1 || got[0] != softhsm.ConfEnv+"="+env.ConfPath {
		t.Fatalf("Environ = %v", got)
	}

	// Not active yet.
	t.Setenv(softhsm.ConfEnv, "")
	if _, err := env.InitToken(m, "a", "sopin1", "userpin1"); !errors.Is(err, softhsm.ErrConfNotActive) {
		t.Fatalf("inactive conf: %v", err)
	}
	t.Setenv(softhsm.ConfEnv, env.ConfPath)
	if !env.Active() {
		t.Fatal("not active")
	}
	for _, bad := range []struct{ label, so, user string }{
		{"", "sopin1", "userpin1"},
		{strings.Repeat("x", 33), "sopin1", "userpin1"},
		{"a", "123", "userpin1"},
		{"a", "sopin1", ""},
	} {
		_, err := env.InitToken(m, bad.label, bad.so, bad.user)
		if err == nil {
			t.Fatalf("InitToken(%q) accepted bad input", bad.label)
		}
		if bad.so != "" && strings.Contains(err.Error(), bad.so) || bad.user != "" && strings.Contains(err.Error(), bad.user) {
			t.Fatalf("error leaks a PIN: %v", err)
		}
	}

	t1, err := env.InitToken(m, "first", "so-secret-1", "user-secret-1")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := env.InitToken(m, "second", "so-secret-2", "user-secret-2")
	if err != nil {
		t.Fatal(err)
	}
	if t1.Label != "first" || t2.Label != "second" || t1.Serial == "" || t1.Serial == t2.Serial {
		t.Fatalf("tokens %+v %+v", t1, t2)
	}

	// The tokens exist in this Env, log in with their PINs, and the module
	// is left finalised.
	c := p11.New(m)
	if err := c.Initialize(); err != nil {
		t.Fatalf("module left initialised by InitToken? %v", err)
	}
	seen := map[string]bool{}
	slots, _ := c.GetSlotList(true)
	for _, s := range slots {
		ti, _ := c.GetTokenInfo(s)
		if ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		seen[ti.Label] = true
		pin := map[string]string{"first": "user-secret-1", "second": "user-secret-2"}[ti.Label]
		sh, err := c.OpenSession(s, p11.CKF_SERIAL_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(sh, p11.CKU_USER, pin); err != nil {
			t.Fatalf("login to %q: %v", ti.Label, err)
		}
		c.CloseSession(sh)
	}
	if len(seen) != 2 || !seen["first"] || !seen["second"] {
		t.Fatalf("tokens in the Env: %v", seen)
	}
	// While the module is initialised, InitToken refuses.
	if _, err := env.InitToken(m, "third", "so-secret-3", "user-secret-3"); !errors.Is(err, softhsm.ErrModuleInUse) {
		t.Fatalf("InitToken with the module in use: %v", err)
	}
	c.Finalize()

	if err := env.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env.TokenDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("token dir still there: %v", err)
	}
}

func TestTempEnv(t *testing.T) {
	env, err := softhsm.NewEnv("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env.ConfPath); err != nil {
		t.Fatal(err)
	}
	if err := env.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary dir still there: %v", err)
	}
}

func TestBadDir(t *testing.T) {
	for _, bad := range []string{"a#b", "a=b", "a\nb", "a "} {
		if _, err := softhsm.NewEnv(filepath.Join(t.TempDir(), bad)); !errors.Is(err, softhsm.ErrBadDir) {
			t.Fatalf("NewEnv(%q): %v", bad, err)
		}
	}
}
