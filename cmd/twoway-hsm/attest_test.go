package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// TestAttest is the operator's two commands (keys create, keys attest)
// and the client's verification, with swtpm manufactured with EK
// certificates by a swtpm-localca CA in the test's directory.
func TestAttest(t *testing.T) {
	caDir := t.TempDir()
	sw := testenv.StartSWTPM(t, testenv.SWTPMEKCert(caDir))
	other := testenv.StartSWTPM(t, testenv.SWTPMEKCert(caDir))
	root, issuer := sw.EKRoot()
	dir := t.TempDir()
	tr := sw.Transport()
	ref := "tpm2:file=" + filepath.Join(dir, "gw.pem") + "?tpm=" + tr
	mustRun(t, nil, "keys", "create", ref, "--kem", "p256")
	keyConfig := filepath.Join(dir, "gw.ohttp-keys")
	mustRun(t, nil, "key-config", "--key", "7="+ref, "--format", "binary", "--out", keyConfig)

	ev := filepath.Join(dir, "gw-evidence.json")
	r := mustRun(t, nil, "keys", "attest", ref, "--key-id", "7", "--out", ev)
	if !strings.Contains(r.stdout, "CN=swtpm-localca") {
		t.Errorf("keys attest printed %q", r.stdout)
	}
	b, err := os.ReadFile(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.ParseEvidence(b); err != nil {
		t.Fatalf("the evidence file does not parse: %v", err)
	}

	verify := []string{"attest", "verify", ev, "--roots", root, "--intermediates", issuer, "--key-config", keyConfig}

	// With credential activation against the TPM: verified.
	r = mustRun(t, nil, append(verify, "--activate", "tpm2:?tpm="+tr)...)
	for _, want := range []string{"key id:         7", "KEM:            p256", "issuer CN=swtpm-localca", "manufacturer id:00001014",
		"fixedTPM fixedParent sensitiveDataOrigin userWithAuth decrypt", "generated in the TPM", "one of the published",
		"AK-EK binding:  verified by credential activation"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("attest verify output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustRun(t, nil, append(verify, "--activate", "tpm2:?tpm="+tr, "--json")...)
	var v verifyView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || !v.Verified || v.Binding != "verified" || v.KeyID != 7 {
		t.Fatalf("--json: %v %+v", err, v)
	}

	// Without activation: refused, saying so; with --skip-activation:
	// accepted, still saying so.
	runFail(t, nil, exitFailure, "the AK-EK binding is NOT verified", verify...)
	r = mustRun(t, nil, append(verify, "--skip-activation")...)
	if !strings.Contains(r.stdout, "AK-EK binding:  NOT verified") {
		t.Errorf("--skip-activation output:\n%s", r.stdout)
	}

	// Activation answered by another TPM fails.
	runFail(t, nil, exitFailure, "the AK-EK binding failed", append(verify, "--activate", "tpm2:?tpm="+other.Transport())...)

	// A wrong root.
	stranger := testenv.StartSWTPM(t, testenv.SWTPMEKCert(""))
	strangerRoot, _ := stranger.EKRoot()
	runFail(t, nil, exitFailure, "EK certificate not trusted", "attest", "verify", ev, "--roots", strangerRoot, "--skip-activation")

	// Nonces: fresh evidence for one, checked against another.
	fresh := filepath.Join(dir, "fresh.json")
	mustRun(t, nil, "keys", "attest", ref, "--key-id", "7", "--nonce", "00112233", "--out", fresh)
	mustRun(t, nil, "attest", "verify", fresh, "--roots", root, "--intermediates", issuer, "--nonce", "00112233", "--skip-activation")
	runFail(t, nil, exitFailure, "not bound to the key configuration and nonce", "attest", "verify", fresh, "--roots", root, "--intermediates", issuer, "--nonce", "44556677", "--skip-activation")

	// A key configuration that publishes another key under the id.
	otherRef := "tpm2:file=" + filepath.Join(dir, "other.pem") + "?tpm=" + tr
	mustRun(t, nil, "keys", "create", otherRef, "--kem", "p256")
	otherConfig := filepath.Join(dir, "other.ohttp-keys")
	mustRun(t, nil, "key-config", "--key", "7="+otherRef, "--format", "binary", "--out", otherConfig)
	runFail(t, nil, exitFailure, "key configuration does not match", "attest", "verify", ev, "--roots", root, "--intermediates", issuer, "--key-config", otherConfig, "--skip-activation")

	// Evidence with a flipped bit.
	bad := strings.Replace(string(b), `"signature": "`, `"signature": "A`, 1)
	badFile := filepath.Join(dir, "bad.json")
	os.WriteFile(badFile, []byte(bad), 0o600)
	runFail(t, nil, exitFailure, "evidence NOT verified", "attest", "verify", badFile, "--roots", root, "--skip-activation")

	// An imported key is refused, and accepted with --allow-imported.
	priv := writeRaw(t, make32(7))
	impRef := "tpm2:file=" + filepath.Join(dir, "imp.pem") + "?tpm=" + tr
	mustRun(t, nil, "keys", "import", impRef, "--from", priv, "--kem", "p256")
	imp := filepath.Join(dir, "imp.json")
	mustRun(t, nil, "keys", "attest", impRef, "--out", imp)
	runFail(t, nil, exitFailure, "imported into the TPM", "attest", "verify", imp, "--roots", root, "--intermediates", issuer, "--skip-activation")
	r = mustRun(t, nil, "attest", "verify", imp, "--roots", root, "--intermediates", issuer, "--skip-activation", "--allow-imported")
	if !strings.Contains(r.stdout, "IMPORTED") {
		t.Errorf("imported key output:\n%s", r.stdout)
	}

	// Usage errors and keys that cannot be attested.
	runFail(t, nil, exitUsage, "missing --roots", "attest", "verify", ev)
	runFail(t, nil, exitUsage, "not both", append(verify, "--activate", "tpm2:?tpm="+tr, "--skip-activation")...)
	runFail(t, nil, exitUsage, "missing --out", "keys", "attest", ref)
	runFail(t, nil, exitFailure, "only TPM keys", "keys", "attest", "soft:file="+filepath.Join(dir, "nope.pem"), "--out", filepath.Join(dir, "x.json"))
	plain := testenv.StartSWTPM(t) // no EK certificate
	plainRef := "tpm2:file=" + filepath.Join(dir, "plain.pem") + "?tpm=" + plain.Transport()
	mustRun(t, nil, "keys", "create", plainRef, "--kem", "p256")
	runFail(t, nil, exitFailure, "no usable EK certificate", "keys", "attest", plainRef, "--out", filepath.Join(dir, "x.json"))
}

func make32(b byte) []byte {
	out := make([]byte, 32)
	out[31] = b
	return out
}
