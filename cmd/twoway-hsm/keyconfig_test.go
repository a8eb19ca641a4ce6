package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

func TestParseKEM(t *testing.T) {
	for in, want := range map[string]kem.ID{
		"p256": kem.DHKEMP256HKDFSHA256, "P-256": kem.DHKEMP256HKDFSHA256, "prime256v1": kem.DHKEMP256HKDFSHA256,
		"DHKEM(P-256, HKDF-SHA256)": kem.DHKEMP256HKDFSHA256, "0x0010": kem.DHKEMP256HKDFSHA256, "16": kem.DHKEMP256HKDFSHA256,
		"P384": kem.DHKEMP384HKDFSHA384, "p-521": kem.DHKEMP521HKDFSHA512, "X25519": kem.DHKEMX25519HKDFSHA256,
		"dhkem(x448, hkdf-sha512)": kem.DHKEMX448HKDFSHA512, "0x21": kem.DHKEMX448HKDFSHA512,
		"ML-KEM-768": kem.MLKEM768, "mlkem1024": kem.MLKEM1024, "X-Wing": kem.XWing, "MLKEM768-X25519": kem.XWing,
	} {
		got, err := parseKEM(in)
		if err != nil || got != want {
			t.Errorf("parseKEM(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "p255", "0x9999", "rsa", "ed25519"} {
		if _, err := parseKEM(in); err == nil || !isUsage(err) {
			t.Errorf("parseKEM(%q): %v, want a usage error", in, err)
		}
	}
}

func TestParseSuite(t *testing.T) {
	for in, want := range map[string]twoway.SymmetricSuite{
		"hkdf-sha256/aes-128-gcm":       {KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM},
		"HKDF-SHA384/AES-256-GCM":       {KDF: hpke.KDF_HKDF_SHA384, AEAD: hpke.AEAD_AES256GCM},
		"sha512/chacha20poly1305":       {KDF: hpke.KDF_HKDF_SHA512, AEAD: hpke.AEAD_ChaCha20Poly1305},
		"0x0001/0x0003":                 {KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_ChaCha20Poly1305},
		"hkdf-sha256/chacha20-poly1305": {KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_ChaCha20Poly1305},
	} {
		got, err := parseSuite(in)
		if err != nil || got != want {
			t.Errorf("parseSuite(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"hkdf-sha256", "md5/aes-128-gcm", "hkdf-sha256/des", "0x0009/0x0001", "/"} {
		if _, err := parseSuite(in); err == nil || !isUsage(err) {
			t.Errorf("parseSuite(%q): %v, want a usage error", in, err)
		}
	}
	// selftest's --kdf and --aead take the same names
	if kdf, err := parseKDF("HKDF-SHA384"); err != nil || kdf != hpke.KDF_HKDF_SHA384 || kdfName(kdf) != "hkdf-sha384" {
		t.Errorf("parseKDF(HKDF-SHA384) = %v, %v", kdf, err)
	}
	if _, err := parseAEAD("aes"); err == nil || !isUsage(err) || !strings.Contains(err.Error(), "aes-128-gcm, aes-256-gcm, chacha20-poly1305") {
		t.Errorf("parseAEAD(aes): %v", err)
	}
	if s := defaultSuites(kem.DHKEMP384HKDFSHA384); len(s) != 2 || s[0].KDF != hpke.KDF_HKDF_SHA384 || s[1].AEAD != hpke.AEAD_ChaCha20Poly1305 {
		t.Errorf("default suites for P-384: %+v", s)
	}
	if s := defaultSuites(kem.DHKEMX448HKDFSHA512); s[0].KDF != hpke.KDF_HKDF_SHA512 {
		t.Errorf("default suites for X448: %+v", s)
	}
}

func TestKeyConfigFormats(t *testing.T) {
	dir := t.TempDir()
	ref := "soft:file=" + filepath.Join(dir, "k.pem")
	key := keyJSON(t, nil, "keys", "create", ref, "--kem", "p384")
	bin := mustRun(t, nil, "key-config", "--key", "3="+ref, "--format", "binary").stdout

	// hex is the default
	hx := mustRun(t, nil, "key-config", "--key", "3="+ref).stdout
	if strings.TrimSpace(hx) != hex.EncodeToString([]byte(bin)) {
		t.Fatalf("hex %q, binary %x", hx, bin)
	}
	b64 := mustRun(t, nil, "key-config", "--key", "3="+ref, "--format", "base64").stdout
	if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64)); err != nil || string(dec) != bin {
		t.Fatalf("base64 %q: %v", b64, err)
	}
	// --out writes the body
	out := filepath.Join(dir, "ohttp-keys")
	mustRun(t, nil, "key-config", "--key", "3="+ref, "--format", "binary", "--out", out)
	if b, err := os.ReadFile(out); err != nil || string(b) != bin {
		t.Fatalf("--out: %v", err)
	}
	// json describes the configuration
	var v keyConfigView
	r := mustRun(t, nil, "key-config", "--key", "3="+ref, "--suite", "hkdf-sha384/aes-256-gcm", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("json: %v\n%s", err, r.stdout)
	}
	if v.MediaType != "application/ohttp-keys" || len(v.Configs) != 1 {
		t.Fatalf("json: %+v", v)
	}
	c := v.Configs[0]
	if c.KeyID != 3 || c.KEM != "p384" || c.KEMID != 0x11 || c.PublicKey != key.PublicKey || len(c.Suites) != 1 ||
		c.Suites[0] != (suiteDetail{KDF: "hkdf-sha384", KDFID: 2, AEAD: "aes-256-gcm", AEADID: 2}) {
		t.Fatalf("json config: %+v", c)
	}
	body, err := hex.DecodeString(v.Body)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := twoway.ParseKeyConfigs(body)
	if err != nil || len(cs) != 1 || len(cs[0].Suites) != 1 || cs[0].Suites[0].AEAD != hpke.AEAD_AES256GCM {
		t.Fatalf("json body: %+v %v", cs, err)
	}
	// default suites: the KEM's hash, AES-128-GCM and ChaCha20-Poly1305
	cs, err = twoway.ParseKeyConfigs([]byte(bin))
	if err != nil || len(cs[0].Suites) != 2 || cs[0].Suites[0] != (twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA384, AEAD: hpke.AEAD_AES128GCM}) {
		t.Fatalf("default suites: %+v %v", cs, err)
	}
	// a key that is not there
	runFail(t, nil, exitFailure, "does not exist", "key-config", "--key", "1=soft:file="+filepath.Join(dir, "missing.pem"))
}

func TestKeyConfigPKCS11Fallback(t *testing.T) {
	tok := testenv.SoftHSM(t)
	env := tok.Environ()
	// No public key object: key-config falls back to logging in, which
	// needs the PIN, and then finds no key.
	runFail(t, env, exitFailure, "PIN", "key-config", "--key", "1="+tok.URIWithoutPIN("id=%77"))
	runFail(t, env, exitFailure, "no private key", "key-config", "--key", "1="+tok.URI("id=%77"))
	runFail(t, env, exitFailure, "token not found", "key-config", "--key", "1="+strings.Replace(tok.URI("id=%01"), "token="+tok.TokenLabel, "token=nosuchtoken", 1))
}

// TestKeyConfigMerge merges the key configurations of several gateways,
// from files and from a gateway on loopback, with --key keys.
func TestKeyConfigMerge(t *testing.T) {
	dir := t.TempDir()
	refA, refB, refC := "soft:file="+filepath.Join(dir, "a.pem"), "soft:file="+filepath.Join(dir, "b.pem"), "soft:file="+filepath.Join(dir, "c.pem")
	mustRun(t, nil, "keys", "create", refA, "--kem", "p256")
	mustRun(t, nil, "keys", "create", refB, "--kem", "x25519")
	mustRun(t, nil, "keys", "create", refC, "--kem", "p384")
	file := func(name string, key ...string) (string, []byte) {
		p := filepath.Join(dir, name)
		args := []string{"key-config", "--format", "binary", "--out", p}
		for _, k := range key {
			args = append(args, "--key", k)
		}
		mustRun(t, nil, args...)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return p, b
	}
	fileA, bodyA := file("gw-a.keys", "1="+refA)
	fileB, bodyB := file("gw-b.keys", "2="+refB)
	ids := func(body string) []byte {
		t.Helper()
		cs, err := twoway.ParseKeyConfigs([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		for _, c := range cs {
			out = append(out, c.KeyID)
		}
		return out
	}

	// two files: both lists, in order
	r := mustRun(t, nil, "key-config", "--merge", fileA, "--merge", fileB, "--format", "binary")
	if r.stdout != string(bodyA)+string(bodyB) {
		t.Fatalf("merge of two files: %x, want %x%x", r.stdout, bodyA, bodyB)
	}
	// --key first, then the sources
	r = mustRun(t, nil, "key-config", "--merge", fileA, "--key", "3="+refC, "--format", "binary")
	if got := ids(r.stdout); string(got) != "\x03\x01" {
		t.Fatalf("--key with --merge: ids %v", got)
	}
	// the same configuration twice is listed once, from wherever it comes
	for _, args := range [][]string{{"--merge", fileA, "--merge", fileA}, {"--key", "1=" + refA, "--merge", fileA}} {
		r = mustRun(t, nil, append([]string{"key-config", "--format", "binary"}, args...)...)
		if r.stdout != string(bodyA) || !strings.Contains(r.stderr, "key id 1 from "+fileA+" is the one from") {
			t.Fatalf("%q: %x, stderr %q", args, r.stdout, r.stderr)
		}
	}
	// another configuration under a listed key id is an error naming both
	fileA2, _ := file("gw-a2.keys", "1="+refB)
	r = runFail(t, nil, exitFailure, "key id 1 has one configuration in "+fileA+" and another in "+fileA2, "key-config", "--merge", fileA, "--merge", fileA2)
	if !strings.Contains(r.stderr, "a key id of its own") || r.stdout != "" {
		t.Fatalf("conflict: %+v", r)
	}
	runFail(t, nil, exitFailure, "key id 1 has one configuration in --key 1="+refB+" and another in "+fileA, "key-config", "--key", "1="+refB, "--merge", fileA)
	// the same key with other suites is another configuration
	runFail(t, nil, exitFailure, "key id 1 has one configuration", "key-config", "--key", "1="+refA, "--suite", "hkdf-sha256/aes-256-gcm", "--merge", fileA)

	// a gateway on loopback, by its URL without a path
	k, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	if err != nil {
		t.Fatal(err)
	}
	keys := twoway.NewGateway(nil)
	if err := keys.AddKey(5, k, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_ChaCha20Poly1305}); err != nil {
		t.Fatal(err)
	}
	h, err := gateway.New(keys, http.NotFoundHandler(), gateway.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	published, _ := keys.MarshalKeyConfigs()
	r = mustRun(t, nil, "key-config", "--merge", srv.URL, "--merge", fileB, "--format", "binary")
	if r.stdout != string(published)+string(bodyB) {
		t.Fatalf("merge of a URL and a file: %x", r.stdout)
	}
	var v keyConfigView
	r = mustRun(t, nil, "key-config", "--key", "1="+refA, "--merge", srv.URL+gateway.DefaultPath, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Configs) != 2 || v.Configs[0].Ref != refA || v.Configs[0].Source != "" || v.Configs[1].Source != srv.URL+gateway.DefaultPath ||
		v.Configs[1].Ref != "" || v.Configs[1].KeyID != 5 || v.Configs[1].KEM != "x25519" || v.Configs[1].Suites[0].AEAD != "chacha20-poly1305" ||
		v.Configs[1].PublicKey != hex.EncodeToString(k.PublicKeyBytes()) {
		t.Fatalf("json: %+v", v)
	}
	if body, _ := hex.DecodeString(v.Body); len(ids(string(body))) != 2 {
		t.Fatalf("json body %s", v.Body)
	}

	// sources that fail
	runFail(t, nil, exitFailure, "answered 404 Not Found", "key-config", "--merge", srv.URL+"/nope")
	hexFile := filepath.Join(dir, "gw.hex")
	os.WriteFile(hexFile, []byte(hex.EncodeToString(bodyA)+"\n"), 0o644)
	runFail(t, nil, exitFailure, "looks like hex or base64", "key-config", "--merge", hexFile)
	runFail(t, nil, exitFailure, "no such file", "key-config", "--merge", filepath.Join(dir, "absent"))
	cut := filepath.Join(dir, "cut")
	os.WriteFile(cut, bodyA[:len(bodyA)-3], 0o644)
	runFail(t, nil, exitFailure, "--merge "+cut+": twoway: key configs: config 0 claims", "key-config", "--merge", fileA, "--merge", cut)
	runFail(t, nil, exitUsage, "want a file or an http or https URL", "key-config", "--merge", "ftp://gw.example/keys")
	runFail(t, nil, exitUsage, "empty source", "key-config", "--merge", "")
	runFail(t, nil, exitUsage, "no --key given and no --merge", "key-config")
}
