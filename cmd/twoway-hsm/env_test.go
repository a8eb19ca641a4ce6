package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// TestEnvUpDown runs env up, uses the keys it made, and checks that env
// down leaves no process and no directory behind.
func TestEnvUpDown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "env")
	r := run(t, nil, "", "env", "up", "--dir", dir, "--json")
	var v envView
	jerr := json.Unmarshal([]byte(r.stdout), &v)
	pid := 0
	if v.SWTPM != nil {
		pid = v.SWTPM.Pid
	}
	t.Cleanup(func() {
		// Whatever happened, stop the swtpm and remove the directory.
		if _, err := os.Stat(dir); err == nil {
			run(t, nil, "", "env", "down", "--dir", dir)
		}
		if pidAlive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if r.code != 0 || jerr != nil {
		t.Fatalf("env up: exit %d, %v\nstdout: %s\nstderr: %s", r.code, jerr, r.stdout, r.stderr)
	}
	for _, m := range v.Missing {
		testenv.Unavailable(t, "env up: "+m.Tool+" missing: "+m.Install)
	}
	if len(v.Keys) != 3 || v.SWTPM == nil || v.SoftHSM == nil || !pidAlive(pid) {
		t.Fatalf("env up: %+v", v)
	}
	// PINs: in 0600 files, never printed
	pin, err := os.ReadFile(v.SoftHSM.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	soPIN, err := os.ReadFile(v.SoftHSM.SOPINFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{v.SoftHSM.PINFile, v.SoftHSM.SOPINFile} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, st, err)
		}
	}
	text := run(t, nil, "", "env", "up", "--dir", dir) // refused: it exists
	if text.code != exitFailure || !strings.Contains(text.stderr, "env down") {
		t.Errorf("env up on an existing environment: exit %d, %s", text.code, text.stderr)
	}
	for _, out := range []string{r.stdout, r.stderr, text.stdout, text.stderr} {
		if strings.Contains(out, strings.TrimSpace(string(pin))) || strings.Contains(out, strings.TrimSpace(string(soPIN))) {
			t.Fatal("env up printed a PIN")
		}
	}

	// The printed references work, with the printed environment.
	env := []string{softhsm.ConfEnv + "=" + v.Environment[softhsm.ConfEnv]}
	args := []string{"key-config", "--format", "binary"}
	for i, k := range v.Keys {
		args = append(args, "--key", string(rune('1'+i))+"="+k.Ref)
	}
	cs, err := twoway.ParseKeyConfigs([]byte(mustRun(t, env, args...).stdout))
	if err != nil || len(cs) != 3 {
		t.Fatalf("key-config of the environment's keys: %v %+v", err, cs)
	}
	for i, k := range v.Keys {
		shown := keyJSON(t, env, "keys", "show", k.Ref)
		if shown.PublicKey != k.PublicKey {
			t.Errorf("%s: show %s, env up %s", k.Name, shown.PublicKey, k.PublicKey)
		}
		checkConfig(t, cs[i], byte(i+1), shown)
	}
	if l := listJSON(t, env, v.SoftHSM.TokenURI); len(l.Keys) != 1 {
		t.Errorf("token list: %+v", l)
	}

	// env down: no swtpm, no directory
	r = mustRun(t, nil, "env", "down", "--dir", dir, "--json")
	var d envDownView
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || !d.Removed || d.StoppedPid != pid {
		t.Fatalf("env down: %v %+v", err, d)
	}
	waitGone(t, pid) // swtpm
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists: %v", dir, err)
	}
	// again: nothing to do
	mustRun(t, nil, "env", "down", "--dir", dir)
}

func TestEnvDownRefusesOtherDirs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	runFail(t, nil, exitFailure, "does not look like a twoway-hsm environment", "env", "down", "--dir", dir)
	runFail(t, nil, exitFailure, "not empty", "env", "up", "--dir", dir)
	if _, err := os.Stat(filepath.Join(dir, "precious")); err != nil {
		t.Fatal("env touched a directory it did not make")
	}
}

// TestEnvUpWithoutTools: without softhsm2 and swtpm, env up makes what it
// can (the soft key) and says what to install.
func TestEnvUpWithoutTools(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "env")
	env := []string{"PATH=" + t.TempDir(), softhsm.ModuleEnv + "=" + filepath.Join(t.TempDir(), "libsofthsm2.so")}
	r := mustRun(t, env, "env", "up", "--dir", dir)
	for _, want := range []string{"apt-get install -y softhsm2", "apt-get install -y swtpm swtpm-tools", "soft:file=" + dir} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("env up without tools does not say %q:\n%s", want, r.stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "swtpm")); err == nil {
		t.Error("env up without swtpm made a swtpm directory")
	}
	mustRun(t, nil, "env", "down", "--dir", dir)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists: %v", dir, err)
	}
}
