package main

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudflare/circl/dh/x448"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The end-to-end tests of keys and key-config run the built binary (see
// binary_test.go) as an operator would, against a real SoftHSM2 token, a
// real swtpm and soft key files.

// mustRun runs the binary and fails the test unless it exits 0.
func mustRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := run(t, env, "", args...)
	if r.code != 0 {
		t.Fatalf("twoway-hsm %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// runFail runs the binary and checks that it exits with code and says
// want (in stdout or stderr).
func runFail(t *testing.T, env []string, code int, want string, args ...string) result {
	t.Helper()
	r := run(t, env, "", args...)
	if r.code != code || !strings.Contains(r.stdout+r.stderr, want) {
		t.Fatalf("twoway-hsm %s: exit %d, want %d and %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, want, r.stdout, r.stderr)
	}
	return r
}

// keyJSON runs a command with --json that prints one key.
func keyJSON(t *testing.T, env []string, args ...string) testKey {
	t.Helper()
	r := mustRun(t, env, append(args, "--json")...)
	var v testKey
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("twoway-hsm %s --json: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
	return v
}

// listJSON runs keys list --json.
func listJSON(t *testing.T, env []string, ref string, extra ...string) testList {
	t.Helper()
	r := mustRun(t, env, append([]string{"keys", "list", ref, "--json"}, extra...)...)
	var l testList
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatalf("keys list --json: %v\n%s", err, r.stdout)
	}
	return l
}

// keyConfigOf runs key-config --format binary (stdout is a pipe) and
// parses the body back.
func keyConfigOf(t *testing.T, env []string, keys ...string) []twoway.KeyConfig {
	t.Helper()
	args := []string{"key-config", "--format", "binary"}
	for _, k := range keys {
		args = append(args, "--key", k)
	}
	r := mustRun(t, env, args...)
	cs, err := twoway.ParseKeyConfigs([]byte(r.stdout))
	if err != nil {
		t.Fatalf("key-config output does not parse: %v (%x)", err, r.stdout)
	}
	return cs
}

// checkConfig checks a parsed key configuration against a key shown by
// keys show.
func checkConfig(t *testing.T, c twoway.KeyConfig, keyID byte, v testKey) {
	t.Helper()
	if c.KeyID != keyID || uint16(c.KEM) != v.KEMID || hex.EncodeToString(c.PublicKey) != v.PublicKey {
		t.Fatalf("key config: id %d KEM 0x%04x public key %x; want id %d KEM 0x%04x public key %s", c.KeyID, uint16(c.KEM), c.PublicKey, keyID, v.KEMID, v.PublicKey)
	}
	if len(c.Suites) == 0 {
		t.Fatal("key config without suites")
	}
}

// writePKCS8 writes a PKCS#8 PEM file of a crypto/ecdh key.
func writePKCS8(t *testing.T, priv *ecdh.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeRaw writes raw key bytes to a file.
func writeRaw(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.raw")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeysPKCS11(t *testing.T) {
	tok := testenv.SoftHSM(t)
	env := tok.Environ()

	// create, for every DHKEM SoftHSM2 does
	ref := tok.URI("id=%01", "object=gw")
	created := keyJSON(t, env, "keys", "create", ref, "--kem", "p256")
	if created.KEM != "p256" || !created.Usable || created.Backend != "pkcs11" || len(created.PublicKey) != 130 {
		t.Fatalf("created %+v", created)
	}
	a := created.PKCS11.Attributes
	if !a.Sensitive || a.Extractable || !a.Derive || !a.Token || !a.Private || created.PKCS11.ID != "01" || created.PKCS11.Label != "gw" {
		t.Fatalf("created key: %+v", created.PKCS11)
	}
	for _, want := range []string{"token=" + tok.TokenLabel, "serial=" + tok.Serial, "id=%01", "object=gw", "module-path=", "pin-source=file:"} {
		if !strings.Contains(created.Ref, want) {
			t.Errorf("reference %s lacks %s", created.Ref, want)
		}
	}
	for i, name := range []string{"p384", "P-521", "x25519", "X448"} {
		id := []string{"%02", "%03", "%04", "%05"}[i]
		v := keyJSON(t, env, "keys", "create", tok.URI("id="+id), "--kem", name)
		if !v.Usable || v.KEMID == 0 {
			t.Fatalf("create %s: %+v", name, v)
		}
	}

	// an id or a label already in use is refused
	runFail(t, env, exitFailure, "already exists", "keys", "create", tok.URI("id=%01", "object=other"), "--kem", "p256")
	runFail(t, env, exitFailure, "already exists", "keys", "create", tok.URI("id=%09", "object=gw"), "--kem", "p256")
	// the URI must name the key; ML-KEM is not a token KEM
	runFail(t, env, exitUsage, "must name the new key", "keys", "create", tok.URI(), "--kem", "p256")
	runFail(t, env, exitFailure, "soft keys", "keys", "create", tok.URI("id=%0a"), "--kem", "mlkem768")

	// list and show agree with create
	l := listJSON(t, env, tok.URI())
	if l.Backend != "pkcs11" || l.PKCS11.Label != tok.TokenLabel || len(l.Keys) != 5 {
		t.Fatalf("list: %+v", l)
	}
	if l.Keys[0].PublicKey != created.PublicKey || l.Keys[0].Ref != created.Ref {
		t.Fatalf("list: first key %+v, created %+v", l.Keys[0], created)
	}
	text := mustRun(t, env, "keys", "list", tok.URI())
	if !strings.Contains(text.stdout, "gw") || !strings.Contains(text.stdout, "x448") {
		t.Fatalf("list text:\n%s", text.stdout)
	}
	shown := keyJSON(t, env, "keys", "show", ref)
	if shown.PublicKey != created.PublicKey || shown.Ref != created.Ref {
		t.Fatalf("show %+v, created %+v", shown, created)
	}
	// the reference printed works as it is
	if again := keyJSON(t, env, "keys", "show", created.Ref); again.PublicKey != created.PublicKey {
		t.Fatalf("show by printed reference: %+v", again)
	}

	// key-config: read without logging in, by object= alone too
	cs := keyConfigOf(t, env, "1="+tok.URIWithoutPIN("id=%01"), "2="+tok.URIWithoutPIN("object=gw"))
	if len(cs) != 2 {
		t.Fatalf("%d configs", len(cs))
	}
	checkConfig(t, cs[0], 1, shown)
	checkConfig(t, cs[1], 2, shown)
	x448v := keyJSON(t, env, "keys", "show", tok.URI("id=%05"))
	checkConfig(t, keyConfigOf(t, env, "200="+tok.URI("id=%05"))[0], 200, x448v)

	// delete: refused without --yes when stdin is no terminal
	runFail(t, env, exitFailure, "--yes", "keys", "delete", ref)
	r := mustRun(t, env, "keys", "delete", ref, "--yes")
	if !strings.Contains(r.stdout, "deleted") {
		t.Fatalf("delete: %s", r.stdout)
	}
	r = runFail(t, env, exitFailure, "no private key with id=%01", "keys", "show", ref)
	if !strings.Contains(r.stderr, "keys list") {
		t.Errorf("show after delete gives no hint: %s", r.stderr)
	}
	runFail(t, env, exitFailure, "not found", "keys", "delete", ref, "--yes")
	if l := listJSON(t, env, tok.URI()); len(l.Keys) != 4 {
		t.Fatalf("%d keys left, want 4", len(l.Keys))
	}
}

func TestKeysPKCS11Import(t *testing.T) {
	tok := testenv.SoftHSM(t)
	env := tok.Environ()

	// PKCS#8 P-256
	p256, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v := keyJSON(t, env, "keys", "import", tok.URI("id=%10", "object=imported"), "--from", writePKCS8(t, p256))
	if v.PublicKey != hex.EncodeToString(p256.PublicKey().Bytes()) || v.KEM != "p256" {
		t.Fatalf("imported P-256: %+v", v)
	}
	if a := v.PKCS11.Attributes; !a.Sensitive || a.Extractable || !a.Derive || a.Local {
		t.Fatalf("imported key attributes: %+v", a)
	}
	// raw X25519 (--kem required) and raw X448
	xk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := writeRaw(t, xk.Bytes())
	runFail(t, env, exitFailure, "--kem", "keys", "import", tok.URI("id=%11"), "--from", raw)
	v = keyJSON(t, env, "keys", "import", tok.URI("id=%11"), "--from", raw, "--kem", "x25519")
	if v.PublicKey != hex.EncodeToString(xk.PublicKey().Bytes()) {
		t.Fatalf("imported X25519: %+v", v)
	}
	var sk, pk x448.Key
	rand.Read(sk[:])
	x448.KeyGen(&pk, &sk)
	v = keyJSON(t, env, "keys", "import", tok.URI("id=%12"), "--from", writeRaw(t, sk[:]), "--kem", "0x0021")
	if v.PublicKey != hex.EncodeToString(pk[:]) || v.KEM != "x448" {
		t.Fatalf("imported X448: %+v", v)
	}
	// a KEM that contradicts the file
	runFail(t, env, exitFailure, "holds a DHKEM(P-256, HKDF-SHA256) key", "keys", "import", tok.URI("id=%13"), "--from", writePKCS8(t, p256), "--kem", "p384")
	// the same id again
	runFail(t, env, exitFailure, "already exists", "keys", "import", tok.URI("id=%10"), "--from", writePKCS8(t, p256))
	checkConfig(t, keyConfigOf(t, env, "9="+tok.URI("id=%10"))[0], 9, keyJSON(t, env, "keys", "show", tok.URI("id=%10")))
}

func TestKeysPKCS11PIN(t *testing.T) {
	tok := testenv.SoftHSM(t)
	env := tok.Environ()
	mustRun(t, env, "keys", "create", tok.URI("id=%01"), "--kem", "p256")
	secretFree := func(r result) {
		t.Helper()
		if strings.Contains(r.stdout+r.stderr, tok.PIN) || strings.Contains(r.stdout+r.stderr, tok.SOPIN) {
			t.Fatalf("a PIN appears in the output:\n%s\n%s", r.stdout, r.stderr)
		}
	}

	// no PIN at all: a clear failure, and what to do
	r := runFail(t, env, exitFailure, "--pin-file", "keys", "show", tok.URIWithoutPIN("id=%01"))
	secretFree(r)
	// a wrong PIN
	wrong := filepath.Join(t.TempDir(), "wrong.pin")
	if err := os.WriteFile(wrong, []byte("000000-wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runFail(t, env, exitFailure, "PIN incorrect", "keys", "list", tok.URIWithoutPIN(), "--pin-file", wrong)
	secretFree(r)
	if strings.Contains(r.stdout+r.stderr, "000000-wrong") {
		t.Fatal("the wrong PIN appears in the output")
	}
	// --pin-file and --pin-env work, and the printed reference names them
	l := listJSON(t, env, tok.URIWithoutPIN(), "--pin-file", tok.PINFile)
	if len(l.Keys) != 1 || !strings.Contains(l.Keys[0].Ref, "pin-source=file:") {
		t.Fatalf("list with --pin-file: %+v", l)
	}
	l = listJSON(t, append(env, "TW_KEYS_TEST_PIN="+tok.PIN), tok.URIWithoutPIN(), "--pin-env", "TW_KEYS_TEST_PIN")
	if len(l.Keys) != 1 || !strings.Contains(l.Keys[0].Ref, "pin-source=env:TW_KEYS_TEST_PIN") {
		t.Fatalf("list with --pin-env: %+v", l)
	}
	// pin-value in argv: refused without --insecure-pin, accepted with it,
	// and never printed
	withValue := tok.URIWithoutPIN() + "&pin-value=" + tok.PIN
	for _, args := range [][]string{
		{"keys", "list", withValue},
		{"keys", "show", tok.URIWithoutPIN("id=%01") + "&pin-value=" + tok.PIN},
		{"key-config", "--key", "1=" + tok.URIWithoutPIN("id=%01") + "&pin-value=" + tok.PIN},
	} {
		r = runFail(t, env, exitUsage, "--insecure-pin", args...)
		secretFree(r)
	}
	r = mustRun(t, env, "keys", "list", withValue, "--insecure-pin", "--json")
	secretFree(r)
	if strings.Contains(r.stdout, "pin-value") {
		t.Fatalf("pin-value printed: %s", r.stdout)
	}
	r = mustRun(t, env, "keys", "show", tok.URIWithoutPIN("id=%01")+"&pin-value="+tok.PIN, "--insecure-pin")
	secretFree(r)
	// a malformed URI is a usage error, and a bad one with a pin-value is
	// not echoed
	r = runFail(t, env, exitUsage, "see 'twoway-hsm keys show -h'", "keys", "show", "pkcs11:token=x;id=%zz?pin-value="+tok.PIN)
	secretFree(r)
}

func TestKeysTPM2(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	tr := sw.Transport()
	dir := t.TempDir()
	file := filepath.Join(dir, "gw.pem")
	both := "tpm2:file=" + file + ";handle=0x81000020?tpm=" + tr
	fileRef := "tpm2:file=" + file + "?tpm=" + tr
	handleRef := "tpm2:handle=0x81000020?tpm=" + tr

	created := keyJSON(t, nil, "keys", "create", both, "--kem", "p256")
	if created.KEM != "p256" || created.Ref != fileRef || created.TPM2.Handle != "0x81000020" || created.TPM2.HandleRef != handleRef {
		t.Fatalf("created %+v (%+v)", created, created.TPM2)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	// never over an existing file, never on a used handle
	runFail(t, nil, exitFailure, "already exists", "keys", "create", fileRef, "--kem", "p256")
	runFail(t, nil, exitFailure, "already in use", "keys", "create", "tpm2:file="+filepath.Join(dir, "x.pem")+";handle=0x81000020?tpm="+tr, "--kem", "p256")
	if _, err := os.Stat(filepath.Join(dir, "x.pem")); err == nil {
		t.Fatal("a key file was left behind by a failed create")
	}
	runFail(t, nil, exitFailure, "P-256, P-384 or P-521", "keys", "create", "tpm2:file="+filepath.Join(dir, "x.pem")+"?tpm="+tr, "--kem", "x25519")
	p384 := keyJSON(t, nil, "keys", "create", "tpm2:file="+filepath.Join(dir, "p384.pem")+"?tpm="+tr, "--kem", "p384")
	if p384.KEMID != uint16(kem.DHKEMP384HKDFSHA384) {
		t.Fatalf("p384: %+v", p384)
	}

	// list: persistent handles, and the key files of a directory
	l := listJSON(t, nil, "tpm2:?tpm="+tr)
	found := false
	for _, k := range l.Keys {
		if k.TPM2.Handle == "0x81000020" {
			found = k.Usable && k.PublicKey == created.PublicKey && k.Ref == handleRef
		}
	}
	if !found {
		t.Fatalf("list of handles: %+v", l)
	}
	if l := listJSON(t, nil, "tpm2:dir="+dir+"?tpm="+tr); len(l.Keys) != 2 || !l.Keys[0].Usable || !l.Keys[1].Usable {
		t.Fatalf("list of key files: %+v", l)
	}

	// show, by file and by handle; key-config from both
	shown := keyJSON(t, nil, "keys", "show", fileRef)
	if shown.PublicKey != created.PublicKey || shown.TPM2.File != file {
		t.Fatalf("show %+v", shown)
	}
	if byHandle := keyJSON(t, nil, "keys", "show", handleRef); byHandle.PublicKey != created.PublicKey {
		t.Fatalf("show by handle %+v", byHandle)
	}
	cs := keyConfigOf(t, nil, "5="+fileRef, "6="+handleRef, "7=tpm2:file="+filepath.Join(dir, "p384.pem")+"?tpm="+tr)
	checkConfig(t, cs[0], 5, shown)
	checkConfig(t, cs[1], 6, shown)
	checkConfig(t, cs[2], 7, p384)

	// import known key bytes: PKCS#8 P-256 and SEC 1 P-384
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	imp := keyJSON(t, nil, "keys", "import", "tpm2:file="+filepath.Join(dir, "imported.pem")+"?tpm="+tr, "--from", writePKCS8(t, priv))
	if imp.PublicKey != hex.EncodeToString(priv.PublicKey().Bytes()) {
		t.Fatalf("imported %+v", imp)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(ec384)
	if err != nil {
		t.Fatal(err)
	}
	ecdh384, err := ec384.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	sec1 := writeRaw(t, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	imp = keyJSON(t, nil, "keys", "import", "tpm2:file="+filepath.Join(dir, "imported384.pem")+"?tpm="+tr, "--from", sec1)
	if imp.PublicKey != hex.EncodeToString(ecdh384.PublicKey().Bytes()) {
		t.Fatalf("imported P-384 %+v", imp)
	}

	// a key at a handle only, with an auth value from the environment
	authEnv := []string{"TW_KEYS_TEST_AUTH=hunter2"}
	h := keyJSON(t, authEnv, "keys", "create", "tpm2:handle=0x81000021?tpm="+tr, "--kem", "p256", "--pin-env", "TW_KEYS_TEST_AUTH")
	if h.Ref != "tpm2:handle=0x81000021?tpm="+tr+"&auth-source=env:TW_KEYS_TEST_AUTH" || h.TPM2.File != "" {
		t.Fatalf("handle-only key: %+v", h)
	}
	checkConfig(t, keyConfigOf(t, nil, "8=tpm2:handle=0x81000021?tpm="+tr)[0], 8, h)
	mustRun(t, nil, "keys", "delete", "tpm2:handle=0x81000021?tpm="+tr, "--yes")

	// delete: the handle and the file, then neither is there
	runFail(t, nil, exitFailure, "--yes", "keys", "delete", both)
	r := mustRun(t, nil, "keys", "delete", both, "--yes")
	if !strings.Contains(r.stdout, "persistent handle 0x81000020") || !strings.Contains(r.stdout, "key file") {
		t.Fatalf("delete: %s", r.stdout)
	}
	runFail(t, nil, exitFailure, "key file not found", "keys", "show", fileRef)
	runFail(t, nil, exitFailure, "no key at persistent handle", "keys", "show", handleRef)
	// a file that is not a TPM key file is not deleted
	other := writeRaw(t, []byte("not a key"))
	runFail(t, nil, exitFailure, "not a TPM key file", "keys", "delete", "tpm2:file="+other+"?tpm="+tr, "--yes")
	if _, err := os.Stat(other); err != nil {
		t.Fatal("a non-key file was deleted")
	}
}

func TestKeysSoft(t *testing.T) {
	dir := t.TempDir()
	ref := "soft:file=" + filepath.Join(dir, "a.pem")
	r := mustRun(t, nil, "keys", "create", ref, "--kem", "x25519", "--json")
	if !strings.Contains(r.stderr, "development only") {
		t.Fatalf("no warning for a soft key: %q", r.stderr)
	}
	var created testKey
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created.KEM != "x25519" || created.Ref != ref {
		t.Fatalf("created %+v %v", created, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "a.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	runFail(t, nil, exitFailure, "already exists", "keys", "create", ref, "--kem", "p256")
	ml := keyJSON(t, nil, "keys", "create", "soft:file="+filepath.Join(dir, "ml.pem"), "--kem", "ML-KEM-768")
	if ml.KEMID != uint16(kem.MLKEM768) {
		t.Fatalf("ML-KEM: %+v", ml)
	}
	// a raw P-256 scalar
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	imp := keyJSON(t, nil, "keys", "import", "soft:file="+filepath.Join(dir, "imp.pem"), "--from", writeRaw(t, priv.Bytes()), "--kem", "p256")
	if imp.PublicKey != hex.EncodeToString(priv.PublicKey().Bytes()) {
		t.Fatalf("imported %+v", imp)
	}
	// list, show, key-config
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := listJSON(t, nil, "soft:dir="+dir)
	if len(l.Keys) != 3 {
		t.Fatalf("list: %+v", l)
	}
	shown := keyJSON(t, nil, "keys", "show", ref)
	if shown.PublicKey != created.PublicKey {
		t.Fatalf("show %+v", shown)
	}
	cs := keyConfigOf(t, nil, "1="+ref, "2=soft:file="+filepath.Join(dir, "ml.pem"))
	checkConfig(t, cs[0], 1, shown)
	checkConfig(t, cs[1], 2, ml)
	// delete
	runFail(t, nil, exitFailure, "--yes", "keys", "delete", ref)
	mustRun(t, nil, "keys", "delete", ref, "--yes")
	runFail(t, nil, exitFailure, "does not exist", "keys", "show", ref)
	runFail(t, nil, exitFailure, "not a soft key", "keys", "delete", "soft:file="+filepath.Join(dir, "notes.txt"), "--yes")
}

func TestKeysUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keys"}, "missing subcommand"},
		{[]string{"keys", "frobnicate"}, `unknown subcommand "frobnicate"`},
		{[]string{"keys", "create"}, "missing key reference"},
		{[]string{"keys", "create", "soft:file=/tmp/x"}, "missing --kem"},
		{[]string{"keys", "create", "soft:file=/tmp/x", "--kem", "p257"}, `unknown KEM "p257"`},
		{[]string{"keys", "create", "soft:file=/tmp/x", "--kem", "p256", "--bogus"}, "flag provided but not defined"},
		{[]string{"keys", "create", "hsm:foo", "--kem", "p256"}, "unknown reference scheme"},
		{[]string{"keys", "show"}, "missing key reference"},
		{[]string{"keys", "show", "a", "b"}, "unexpected argument"},
		{[]string{"keys", "show", "tpm2:file=/x;colour=blue"}, "unknown path attribute"},
		{[]string{"keys", "show", "tpm2:file=/x?tpm=serial:9"}, "not a transport"},
		{[]string{"keys", "show", "soft:path=/x"}, `unknown path attribute "path"`},
		{[]string{"keys", "show", "pkcs11:tokn=nosuchtoken;id=%01"}, `unknown path attribute "tokn"`},
		{[]string{"keys", "show", "pkcs11:token=t;id=%01?pin-sorce=file:/p"}, `unknown query attribute "pin-sorce"`},
		{[]string{"keys", "list", "soft:file=/x"}, "soft:dir=DIR"},
		{[]string{"keys", "import", "soft:file=/x"}, "missing --from"},
		{[]string{"keys", "delete"}, "missing key reference"},
		{[]string{"key-config"}, "no --key given"},
		{[]string{"key-config", "--key", "300=soft:file=/x"}, "key id from 0 to 255"},
		{[]string{"key-config", "--key", "1=soft:file=/x", "--key", "1=soft:file=/y"}, "given twice"},
		{[]string{"key-config", "--key", "1=soft:file=/x", "--suite", "hkdf-sha256"}, "want KDF/AEAD"},
		{[]string{"key-config", "--key", "1=soft:file=/x", "--format", "xml"}, "unknown --format"},
		{[]string{"env"}, "missing subcommand"},
		{[]string{"env", "sideways"}, "unknown subcommand"},
		{[]string{"env", "up", "extra"}, "unexpected argument"},
		{[]string{"version", "--bogus"}, "flag provided but not defined"},
	} {
		// The cause in one line that names the command, then where the
		// help is: never the whole help.
		r := run(t, nil, "", tc.args...)
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		cmd := tc.args[0]
		if len(tc.args) > 1 && slices.Contains([]string{"create", "show", "list", "import", "delete", "up"}, tc.args[1]) {
			cmd += " " + tc.args[1]
		}
		if r.code != exitUsage || len(lines) != 2 || !strings.HasPrefix(lines[0], "twoway-hsm "+cmd+": ") || !strings.Contains(lines[0], tc.want) ||
			lines[1] != "see 'twoway-hsm "+cmd+" -h'" || r.stdout != "" {
			t.Errorf("twoway-hsm %q: exit %d, stderr %q; want exit 2, \"twoway-hsm %s: ...%s...\" and \"see 'twoway-hsm %s -h'\"", tc.args, r.code, r.stderr, cmd, tc.want, cmd)
		}
	}
}

// TestFailuresForScripts: with --json a failure is one JSON object on
// stdout too, usage errors exit 2 and other failures 1, whatever the
// backend.
func TestFailuresForScripts(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a key at all"), 0o600)
	badPEM := filepath.Join(dir, "bad.pem")
	os.WriteFile(badPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	for _, tc := range []struct {
		args  []string
		code  int
		want  string
		usage bool
	}{
		{[]string{"keys", "show", "soft:file=" + garbage, "--json"}, exitFailure, "garbage.pem", false},
		{[]string{"keys", "show", "soft:file=" + badPEM, "--json"}, exitFailure, "bad.pem", false},
		{[]string{"keys", "show", "soft:file=" + filepath.Join(dir, "none.pem"), "--json"}, exitFailure, "does not exist", false},
		{[]string{"keys", "import", "soft:file=" + filepath.Join(dir, "k.pem"), "--from", garbage, "--json"}, exitFailure, "not a PEM key file", false},
		{[]string{"keys", "show", "soft:fiel=/x", "--json"}, exitUsage, "unknown path attribute", true},
		{[]string{"keys", "create", "soft:file=/x", "--bogus-flag", "--json"}, exitUsage, "flag provided but not defined: -bogus-flag", true},
	} {
		r := run(t, nil, "", tc.args...)
		var f struct {
			Error string `json:"error"`
			Hint  string `json:"hint"`
			Usage bool   `json:"usage"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
			t.Errorf("twoway-hsm %q: stdout %q is not one JSON object: %v", tc.args, r.stdout, err)
			continue
		}
		if r.code != tc.code || !strings.Contains(f.Error, tc.want) || f.Usage != tc.usage || !strings.Contains(r.stderr, f.Error) {
			t.Errorf("twoway-hsm %q: exit %d, %+v; want exit %d, an error saying %q (usage %v)", tc.args, r.code, f, tc.code, tc.want, tc.usage)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"keys", "-h"}, {"keys", "--help"}, {"keys", "create", "-h"}, {"keys", "import", "--help"},
		{"keys", "list", "-h"}, {"keys", "show", "-h"}, {"keys", "delete", "-h"},
		{"key-config", "-h"}, {"env", "-h"}, {"env", "up", "-h"}, {"env", "down", "--help"},
		{"version", "-h"}, {"demo", "-h"}, {"selftest", "-h"},
		{"attest", "-h"}, {"attest", "verify", "-h"}, {"keys", "attest", "-h"}, {"gateway", "-h"}, {"request", "-h"},
	} {
		r := run(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Example") || r.stderr != "" {
			t.Errorf("twoway-hsm %q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	r := mustRun(t, nil, "version", "--json")
	var v struct {
		Version, Go, OS, Arch string
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go") || v.OS == "" {
		t.Fatalf("version --json: %v %q", err, r.stdout)
	}
}

// TestKeysFailures: failures exit 1 and say what to do next.
func TestKeysFailures(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"keys", "list", "tpm2:?tpm=unix:" + filepath.Join(dir, "none.sock")}, []string{"TPM unavailable", "hint:", "env up"}},
		{[]string{"keys", "show", "pkcs11:token=t;id=%01?module-path=" + filepath.Join(dir, "none.so")}, []string{"module not found", "hint:", "module-path"}},
		{[]string{"keys", "show", "soft:file=" + filepath.Join(dir, "none.pem")}, []string{"does not exist"}},
		{[]string{"keys", "create", "soft:file=" + filepath.Join(dir, "no", "such", "dir.pem"), "--kem", "p256"}, []string{"does not exist"}},
		{[]string{"keys", "import", "soft:file=" + filepath.Join(dir, "x.pem"), "--from", filepath.Join(dir, "none.raw"), "--kem", "p256"}, []string{"--from"}},
	} {
		r := run(t, nil, "", tc.args...)
		if r.code != exitFailure {
			t.Errorf("twoway-hsm %q: exit %d, want 1; stderr %s", tc.args, r.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("twoway-hsm %q: stderr %q lacks %q", tc.args, r.stderr, w)
			}
		}
	}
}
