package testenv_test

import (
	"os"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
)

func TestSoftHSM(t *testing.T) {
	sh := testenv.SoftHSM(t)
	if os.Getenv(softhsm.ConfEnv) != sh.Env.ConfPath {
		t.Fatalf("%s not set", softhsm.ConfEnv)
	}
	pin, err := os.ReadFile(sh.PINFile)
	if err != nil || string(pin) != sh.PIN+"\n" {
		t.Fatalf("PIN file: %v", err)
	}
	if fi, _ := os.Stat(sh.PINFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("PIN file mode %v", fi.Mode())
	}
	uri := sh.KeyURI([]byte{1, 0xab}, "k 1")
	for _, want := range []string{"pkcs11:token=" + sh.TokenLabel + ";id=%01%AB;object=k%201?", "module-path=" + sh.ModulePath, "pin-source=file:" + sh.PINFile} {
		if !strings.Contains(uri, want) {
			t.Errorf("KeyURI %s lacks %s", uri, want)
		}
	}
	if strings.Contains(sh.URIWithoutPIN(), "pin") {
		t.Errorf("URIWithoutPIN: %s", sh.URIWithoutPIN())
	}

	// The token is there, with the PIN, through plain PKCS#11.
	c := p11.New(sh.ModulePath)
	if err := c.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer c.Finalize()
	slots, err := c.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range slots {
		ti, _ := c.GetTokenInfo(s)
		if ti.Label != sh.TokenLabel {
			continue
		}
		found = true
		if ti.SerialNumber != sh.Serial {
			t.Errorf("serial %q, want %q", ti.SerialNumber, sh.Serial)
		}
		h, err := c.OpenSession(s, p11.CKF_SERIAL_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(h, p11.CKU_USER, sh.PIN); err != nil {
			t.Fatalf("login: %v", err)
		}
		c.CloseSession(h)
	}
	if !found {
		t.Fatalf("token %q not in the module", sh.TokenLabel)
	}
}

// TestSoftHSMFresh checks that each test gets its own token directory.
func TestSoftHSMFresh(t *testing.T) {
	var dirs []string
	for range 2 {
		t.Run("t", func(t *testing.T) {
			sh := testenv.SoftHSM(t)
			dirs = append(dirs, sh.Env.TokenDir)
		})
	}
	if len(dirs) == 2 && dirs[0] == dirs[1] {
		t.Fatal("two tests shared a token directory")
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left behind", d)
		}
	}
}
