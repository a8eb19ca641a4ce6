package main

import (
	"context"
	"crypto/ecdh"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore/softstore"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// writeSoftKey writes a new software key file and returns its reference.
func writeSoftKey(t *testing.T, id kem.ID) string {
	t.Helper()
	k, err := kem.GenerateKey(id)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := kem.MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return "soft:file=" + path
}

// parseSelftest parses selftest --json output.
func parseSelftest(t *testing.T, r result) selftestReport {
	t.Helper()
	var rep selftestReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("selftest --json printed no JSON (%v): exit %d\nstdout: %s\nstderr: %s", err, r.code, r.stdout, r.stderr)
	}
	return rep
}

// checkSelftest checks a successful report of n round trips.
func checkSelftest(t *testing.T, r result, n int, backend string) selftestReport {
	t.Helper()
	if r.code != exitOK {
		t.Fatalf("selftest exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	rep := parseSelftest(t, r)
	if rep.RoundTrips != n || rep.OK != n || rep.Failures != 0 || len(rep.Errors) != 0 {
		t.Fatalf("report: %d round trips, %d ok, %d failures, errors %q; want %d ok", rep.RoundTrips, rep.OK, rep.Failures, rep.Errors, n)
	}
	if rep.Backend != backend || rep.KEM == "" || rep.Plugin == "" || len(rep.PluginPIDs) == 0 {
		t.Fatalf("report: backend %q, KEM %q, plugin %q, pids %v", rep.Backend, rep.KEM, rep.Plugin, rep.PluginPIDs)
	}
	for s := range roundtrip.NumShapes {
		if want := n/int(roundtrip.NumShapes) + btoi(int(s) < n%int(roundtrip.NumShapes)); rep.Shapes[s.String()] != want {
			t.Errorf("%d %s round trips; want %d", rep.Shapes[s.String()], s, want)
		}
	}
	if rep.RoundTripMS.P50 <= 0 || rep.RoundTripMS.P99 < rep.RoundTripMS.P50 ||
		rep.DecapMS.P50 <= 0 || rep.DecapMS.P99 < rep.DecapMS.P50 || rep.PerSecond <= 0 {
		t.Errorf("latencies: round trip %+v, decapsulation %+v, %v/s", rep.RoundTripMS, rep.DecapMS, rep.PerSecond)
	}
	// One decapsulation per one-to-one round trip, one per receiver of a
	// one-to-many round trip.
	multi := rep.Shapes[roundtrip.OneToMany.String()] + rep.Shapes[roundtrip.OneToManyChunked.String()]
	if want := n - multi + roundtrip.MultiReceivers*multi; rep.Decapsulations != want {
		t.Errorf("%d decapsulations; want %d", rep.Decapsulations, want)
	}
	waitGone(t, rep.PluginPIDs...)
	return rep
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// waitGone fails the test if any of the processes is still running a
// moment after the command that started it has exited.
func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for pidAlive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d is still running", pid)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestSelftestSoftKey(t *testing.T) {
	ref := writeSoftKey(t, kem.DHKEMX25519HKDFSHA256)
	r := run(t, nil, "", "selftest", "--key", ref, "-n", "22", "--json", "--aead", "chacha20-poly1305", "--kdf", "HKDF-SHA512", "--size", "5000")
	rep := checkSelftest(t, r, 22, "soft")
	if rep.KEM != kem.DHKEMX25519HKDFSHA256.String() || rep.KDF != "hkdf-sha512" || rep.AEAD != "chacha20-poly1305" || rep.MessageSize != 5000 {
		t.Errorf("report: %+v", rep)
	}

	// The report for a person, with two processes and four in flight.
	r = run(t, nil, "", "selftest", "--key", ref, "-n", "9", "--processes", "2", "--concurrency", "4")
	if r.code != exitOK {
		t.Fatalf("selftest exited %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"9 round trips through a plugin process, all ok", "backend        soft", "2 processes", "9 ok, 0 failed", "decapsulation  p50", "round trips/s (4 in flight"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	// Without -v, stderr has the soft key's warning and no logs.
	if r.stderr != "warning: "+softstore.Warning+"\n" {
		t.Errorf("stderr without -v: %q; want only the development-only warning", r.stderr)
	}
}

func TestSelftestSoftHSM(t *testing.T) {
	tok := testenv.SoftHSM(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tk, err := pkcs11.OpenToken(ctx, tok.URI())
	if err != nil {
		t.Fatal(err)
	}
	k, err := tk.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: []byte{1}})
	if err != nil {
		tk.Close()
		t.Fatal(err)
	}
	k.Close()
	tk.Close()
	// SOFTHSM2_CONF is in this process's environment (testenv set it), and
	// so in the command's.
	ref := tok.URIWithoutPIN("id=%01")
	r := run(t, []string{"TW_SELFTEST_PIN=" + tok.PIN}, "", "selftest", "--key", ref, "--pin-env", "TW_SELFTEST_PIN", "-n", "16", "--processes", "2", "--json")
	rep := checkSelftest(t, r, 16, "pkcs11")
	if rep.KEM != kem.DHKEMP256HKDFSHA256.String() || len(rep.PluginPIDs) != 2 || strings.Contains(r.stdout+r.stderr, tok.PIN) {
		t.Errorf("report: KEM %q, pids %v", rep.KEM, rep.PluginPIDs)
	}

	// The PIN from a file works as well.
	r = run(t, nil, "", "selftest", "--key", ref, "--pin-file", tok.PINFile, "-n", "4", "--json")
	checkSelftest(t, r, 4, "pkcs11")

	// --insecure-pin with a pin-value (issue 11, bug 1): the PIN reaches
	// the plugin through its environment, so the run works, and it is in
	// neither the plugin's argv nor any log record (-v prints the plugin
	// client's records, go-plugin's "starting plugin ... args=" among
	// them, which the check below requires to be there).
	r = run(t, nil, "", "selftest", "--key", ref+"&pin-value="+tok.PIN, "--insecure-pin", "-n", "4", "-v", "--json")
	checkSelftest(t, r, 4, "pkcs11")
	if strings.Contains(r.stdout+r.stderr, tok.PIN) {
		t.Errorf("--insecure-pin: the PIN is in the output:\n%s%s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "starting plugin") || !strings.Contains(r.stderr, "pin-source=env:"+pluginSecretEnv) {
		t.Errorf("--insecure-pin: -v did not log the plugin's start with its reference:\n%s", r.stderr)
	}

	// A wrong PIN: exit 1, a message that says so and what to check, and
	// no PIN anywhere.
	const wrong = "wrong-pin-4711"
	r = run(t, []string{"TW_SELFTEST_PIN=" + wrong}, "", "selftest", "--key", ref, "--pin-env", "TW_SELFTEST_PIN", "-n", "4")
	if r.code != exitFailure {
		t.Fatalf("wrong PIN: exit %d; want 1\nstderr: %s", r.code, r.stderr)
	}
	for _, want := range []string{"cannot start the plugin", "PIN incorrect", "--pin-file"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("wrong PIN: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stdout+r.stderr, wrong) || strings.Contains(r.stdout+r.stderr, tok.PIN) || strings.Contains(r.stderr, "Unrecognized remote plugin message") {
		t.Errorf("wrong PIN: output:\n%s%s", r.stdout, r.stderr)
	}

	// No PIN at all, and no terminal to ask on.
	r = run(t, nil, "", "selftest", "--key", ref, "-n", "4")
	if r.code != exitFailure || !strings.Contains(r.stderr, "PIN") {
		t.Fatalf("no PIN: exit %d\nstderr: %s", r.code, r.stderr)
	}
}

func TestSelftestTPM(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const auth = "tpm-selftest-auth"
	tp, err := tpm2.Open(ctx, sw.Transport())
	if err != nil {
		t.Fatal(err)
	}
	k, err := tp.CreateKey(ctx, ecdh.P256(), tpm2.WithAuth([]byte(auth)))
	if err != nil {
		tp.Close()
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.tpm.pem")
	if err := k.WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	k.Close()
	// swtpm serves one connection at a time: close ours for the plugin.
	tp.Close()
	authFile := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(authFile, []byte(auth+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ref := (&tpm2.KeyRef{File: path, TPM: sw.Transport()}).String()
	r := run(t, nil, "", "selftest", "--key", ref, "--pin-file", authFile, "-n", "12", "--json")
	rep := checkSelftest(t, r, 12, "tpm2")
	if rep.KEM != kem.DHKEMP256HKDFSHA256.String() || strings.Contains(r.stdout+r.stderr, auth) {
		t.Errorf("report: %+v", rep)
	}

	// The auth value from the reference's own source, an environment
	// variable the plugin is handed.
	r = run(t, []string{"TW_TPM_AUTH=" + auth}, "", "selftest", "--key", ref+"&auth-source=env:TW_TPM_AUTH", "-n", "4", "--json")
	checkSelftest(t, r, 4, "tpm2")

	// A wrong auth value: exit 1 after the first round trip, since every
	// wrong auth value counts towards the TPM's dictionary-attack lockout.
	r = run(t, []string{"TW_TPM_AUTH=not-the-auth"}, "", "selftest", "--key", ref, "--pin-env", "TW_TPM_AUTH", "-n", "50", "--json")
	if r.code != exitFailure || strings.Contains(r.stdout+r.stderr, "not-the-auth") {
		t.Fatalf("wrong auth: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	rep = parseSelftest(t, r)
	if rep.RoundTrips != 1 || rep.Failures != 1 || rep.Requested != 50 || !strings.Contains(rep.Stopped, "dictionary-attack lockout") ||
		!strings.Contains(r.stderr, "Stopped after 1 of 50 round trips") {
		t.Fatalf("wrong auth: report %+v\nstderr: %s", rep, r.stderr)
	}
	waitGone(t, rep.PluginPIDs...)
}

func TestSelftestUsage(t *testing.T) {
	ref := writeSoftKey(t, kem.DHKEMP256HKDFSHA256)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, exitOK, "--pin-file"},
		{nil, exitUsage, "no --key given"},
		{[]string{"--key", ref, "-n", "0"}, exitUsage, "-n must be at least 1"},
		{[]string{"--key", ref, "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"--key", ref, "-n", "x"}, exitUsage, "invalid value"},
		{[]string{"--key", ref, "stray"}, exitUsage, `unexpected argument "stray"`},
		{[]string{"--key", ref, "--kdf", "md5"}, exitUsage, "hkdf-sha256"},
		{[]string{"--key", ref, "--aead", "rot13"}, exitUsage, "chacha20-poly1305"},
		{[]string{"--key", ref, "--processes", "0"}, exitUsage, "--processes"},
		{[]string{"--key", ref, "--size", "0"}, exitUsage, "--size"},
		{[]string{"--key", ref, "--pin-env", "X"}, exitUsage, "do not apply to a soft: key"},
		{[]string{"--key", "file.pem"}, exitUsage, "no scheme"},
		{[]string{"--key", "hsm:x"}, exitUsage, "unknown reference scheme"},
		{[]string{"--key", "pkcs11:token=gw;id=%01?pin-value=1234"}, exitUsage, "--insecure-pin"},
		{[]string{"--key", ref, "--plugin-env", "A=B"}, exitUsage, "environment variable"},
		// A key file that does not exist: the plugin cannot start.
		{[]string{"--key", "soft:file=/nonexistent/key.pem"}, exitFailure, "does not exist"},
	} {
		r := run(t, nil, "", append([]string{"selftest"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
			t.Errorf("selftest %q: exit %d, output %q; want exit %d and %q", tc.args, r.code, r.stdout+r.stderr, tc.code, tc.want)
		}
		if tc.code == exitUsage && r.stdout != "" {
			t.Errorf("selftest %q: usage error on stdout: %q", tc.args, r.stdout)
		}
	}
	// A reference that is refused is not echoed with its pin-value.
	for _, ref := range []string{"hsm:x?pin-value=s3cret", "pkcs11:token=gw;id=%01?pin-value=s3cret"} {
		r := run(t, nil, "", "selftest", "--key", ref)
		if r.code != exitUsage || strings.Contains(r.stdout+r.stderr, "s3cret") {
			t.Errorf("selftest --key %s: exit %d, output %q", ref, r.code, r.stdout+r.stderr)
		}
	}
}
