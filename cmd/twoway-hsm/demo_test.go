package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
	"github.com/twoway-hsm/twoway-hsm/testenv/swtpm"
)

// installedBackends returns the backends the demo should run here.
func installedBackends(t *testing.T) []string {
	t.Helper()
	want := []string{"soft"}
	if _, err := softhsm.FindModule(""); err == nil {
		want = append(want, "pkcs11")
	} else {
		testenv.Unavailable(t, "SoftHSM2 is not installed ("+softhsm.InstallHint+"): the demo's pkcs11 backend is not tested")
	}
	if _, _, err := swtpm.FindBinaries(); err == nil {
		want = append(want, "tpm2")
	} else {
		testenv.Unavailable(t, "swtpm is not installed ("+swtpm.InstallHint+"): the demo's tpm2 backend is not tested")
	}
	return want
}

// demoEnv returns the environment entries of a demo run with a private
// TMPDIR, which must be empty again after the run.
func demoEnv(t *testing.T) (string, []string) {
	t.Helper()
	tmp := t.TempDir()
	// SOFTHSM2_CONF of the test's environment must not matter.
	return tmp, []string{"TMPDIR=" + tmp, "SOFTHSM2_CONF=/nonexistent/softhsm2.conf"}
}

// checkNothingLeft fails the test if the demo left a process running or a
// file in its TMPDIR.
func checkNothingLeft(t *testing.T, tmp string, rep *demoReport) {
	t.Helper()
	var pids []int
	for _, b := range rep.Backends {
		pids = append(pids, b.PluginPIDs...)
		if b.SwtpmPID != 0 {
			pids = append(pids, b.SwtpmPID)
		}
	}
	waitGone(t, pids...)
	if !rep.Kept {
		if _, err := os.Stat(rep.TempDir); !os.IsNotExist(err) {
			t.Errorf("the demo's directory %s is still there (%v)", rep.TempDir, err)
		}
		left, _ := os.ReadDir(tmp)
		if len(left) > 0 {
			var names []string
			for _, e := range left {
				names = append(names, e.Name())
			}
			t.Errorf("left behind in TMPDIR: %v", names)
		}
	}
}

func parseDemo(t *testing.T, stdout string) *demoReport {
	t.Helper()
	var rep demoReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("demo --json printed no JSON (%v):\n%s", err, stdout)
	}
	return &rep
}

func TestDemo(t *testing.T) {
	want := installedBackends(t)
	tmp, env := demoEnv(t)
	start := time.Now()
	r := run(t, env, "", "demo", "--json")
	t.Logf("demo took %v", time.Since(start).Round(time.Millisecond))
	if r.code != exitOK {
		t.Fatalf("demo exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	rep := parseDemo(t, r.stdout)
	defer checkNothingLeft(t, tmp, rep)
	if !rep.OK || rep.ServerPID <= 0 || !strings.HasPrefix(rep.TempDir, tmp) {
		t.Errorf("report: ok %v, server pid %d, temp dir %q", rep.OK, rep.ServerPID, rep.TempDir)
	}
	var got []string
	for _, b := range rep.Backends {
		got = append(got, b.Backend)
		if b.Error != "" {
			t.Errorf("%s: %s", b.Backend, b.Error)
		}
		if b.RoundTrips != demoRoundTrips || b.OK != b.RoundTrips {
			t.Errorf("%s: %d/%d round trips ok; want %d", b.Backend, b.OK, b.RoundTrips, demoRoundTrips)
		}
		if b.KEM == "" || b.DecapP50MS <= 0 || len(b.PluginPIDs) != 1 {
			t.Errorf("%s: KEM %q, decapsulation p50 %v ms, plugin pids %v", b.Backend, b.KEM, b.DecapP50MS, b.PluginPIDs)
		}
		// The check is real: the server process was read, a lot of it.
		s := b.ServerScan
		if b.KeyOutOfSrv != "yes" || s == nil || s.Error != "" || s.Hits != 0 || s.PID != rep.ServerPID || s.MiB < 4 || s.Regions < 5 {
			t.Errorf("%s: key out of server %q, scan %+v", b.Backend, b.KeyOutOfSrv, s)
		}
		p := b.PluginScan
		if p == nil || p.Error != "" || p.PID != b.PluginPIDs[0] || p.MiB < 1 {
			t.Errorf("%s: plugin scan %+v", b.Backend, p)
		}
		switch b.Backend {
		case "soft":
			// The positive control: the soft plugin holds the key.
			if p == nil || p.Hits == 0 {
				t.Errorf("soft: the key was not found in the plugin process, which holds it: %+v", p)
			}
		case "tpm2":
			if b.SwtpmPID <= 0 {
				t.Errorf("tpm2: no swtpm pid")
			}
			if p != nil && p.Hits != 0 {
				t.Errorf("tpm2: the key was found in the plugin process: %+v", p)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("backends %v; want %v", got, want)
	}
	if len(rep.Missing) != 3-len(want) {
		t.Errorf("missing %+v", rep.Missing)
	}
}

// TestDemoTable checks the table for a person, and --keep.
func TestDemoTable(t *testing.T) {
	want := installedBackends(t)
	tmp, env := demoEnv(t)
	r := run(t, env, "", "demo", "--keep", "-n", "4")
	if r.code != exitOK {
		t.Fatalf("demo exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("demo output:\n%s", r.stdout)
	lines := strings.Split(r.stdout, "\n")
	hdr := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "BACKEND") })
	if hdr < 0 || !strings.Contains(lines[hdr], "KEY OUT OF SERVER PROCESS") || !strings.Contains(lines[hdr], "DECAP p50") {
		t.Fatalf("no table header:\n%s", r.stdout)
	}
	for i, b := range want {
		l := lines[hdr+1+i]
		if !strings.HasPrefix(l, b+" ") || !strings.Contains(l, "4/4 ok") || !strings.Contains(l, "yes (0 hits in ") {
			t.Errorf("row %q: want backend %s, 4/4 ok, yes", l, b)
		}
	}
	if strings.Contains(r.stdout, "FAILED") || strings.Contains(r.stdout, "Not tried here") != (len(want) < 3) {
		t.Errorf("output:\n%s", r.stdout)
	}
	// --keep kept the directory, with the keys' files, and stopped the
	// processes.
	m, _ := filepath.Glob(filepath.Join(tmp, "twoway-hsm-demo-*"))
	if len(m) != 1 || !strings.Contains(r.stdout, "Kept "+m[0]) {
		t.Fatalf("kept %v; output:\n%s", m, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(m[0], "soft", "key.pem")); err != nil {
		t.Errorf("kept directory: %v", err)
	}
	if out, err := exec.Command("pgrep", "-f", m[0]).Output(); err == nil && len(out) > 0 {
		t.Errorf("processes still running in the kept directory: %s", out)
	}
}

// TestDemoWithoutBackends runs the demo as on a machine where neither
// SoftHSM2 nor swtpm is installed: the soft backend runs, the others are
// noted with how to install them, and the exit status is 0.
func TestDemoWithoutBackends(t *testing.T) {
	tmp, env := demoEnv(t)
	env = append(env, "PATH="+t.TempDir(), "SOFTHSM2_MODULE=/nonexistent/libsofthsm2.so")
	r := run(t, env, "", "demo")
	if r.code != exitOK {
		t.Fatalf("demo exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"apt-get install -y softhsm2", "apt-get install -y swtpm swtpm-tools", "yes (0 hits in"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "\npkcs11 ") || strings.Contains(r.stdout, "\ntpm2 ") {
		t.Errorf("a missing backend has a row:\n%s", r.stdout)
	}

	r = run(t, env, "", "demo", "--json", "-n", "2")
	if r.code != exitOK {
		t.Fatalf("demo --json exited %d\nstderr: %s", r.code, r.stderr)
	}
	rep := parseDemo(t, r.stdout)
	checkNothingLeft(t, tmp, rep)
	if len(rep.Backends) != 1 || rep.Backends[0].Backend != "soft" || rep.Backends[0].KeyOutOfSrv != "yes" || len(rep.Missing) != 2 {
		t.Fatalf("report: %+v", rep)
	}
	for _, m := range rep.Missing {
		if !strings.HasPrefix(m.Install, "apt-get install -y ") {
			t.Errorf("missing %+v: no install line", m)
		}
	}
}

// TestDemoCheckIsReal makes the demo load the soft key into its own memory,
// as a server without a plugin would: the check must say NO, and the demo
// must fail.
func TestDemoCheckIsReal(t *testing.T) {
	tmp, env := demoEnv(t)
	env = append(env, "PATH="+t.TempDir(), "SOFTHSM2_MODULE=/nonexistent/libsofthsm2.so", demoLeakEnv+"=1")
	r := run(t, env, "", "demo", "--json", "-n", "2")
	if r.code != exitFailure || !strings.Contains(r.stderr, "FAILED") {
		t.Fatalf("demo with the key in its memory exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	rep := parseDemo(t, r.stdout)
	checkNothingLeft(t, tmp, rep)
	if len(rep.Backends) != 1 || rep.OK {
		t.Fatalf("report: %+v", rep)
	}
	b := rep.Backends[0]
	if b.KeyOutOfSrv != "NO" || b.ServerScan == nil || b.ServerScan.Hits == 0 || b.OK != 2 {
		t.Fatalf("soft row: %+v, scan %+v", b, b.ServerScan)
	}
	r = run(t, env, "", "demo", "-n", "1")
	if r.code != exitFailure || !strings.Contains(r.stdout, "NO (") {
		t.Fatalf("table with the key in the demo's memory: exit %d\n%s", r.code, r.stdout)
	}
}

// TestDemoInterrupt interrupts the demo at a few points: it exits 1 and
// stops and removes everything it started. At 100 ms the demo (seconds
// long) must still be running, so that point must be an interruption.
func TestDemoInterrupt(t *testing.T) {
	installedBackends(t)
	for _, after := range []time.Duration{100 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		tmp, env := demoEnv(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, binPath, "demo", "--json")
		cmd.Env = append(os.Environ(), env...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		cancel()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code == exitOK && after > 100*time.Millisecond {
			t.Logf("the demo finished within %v; nothing to interrupt", after)
		} else if code != exitFailure || !strings.Contains(errOut.String(), "interrupted") {
			t.Errorf("interrupted after %v: exit %d (%v)\nstderr: %s", after, code, err, errOut.String())
		}
		if out.Len() > 0 {
			checkNothingLeft(t, tmp, parseDemo(t, out.String()))
		} else {
			left, _ := os.ReadDir(tmp)
			if len(left) > 0 {
				t.Errorf("interrupted after %v: left %v in TMPDIR", after, left)
			}
		}
	}
}

func TestDemoUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, exitOK, "go run ./cmd/twoway-hsm demo"},
		{[]string{"stray"}, exitUsage, `unexpected argument "stray"`},
		{[]string{"--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"-n", "0"}, exitUsage, "-n must be"},
	} {
		r := run(t, nil, "", append([]string{"demo"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
			t.Errorf("demo %q: exit %d, output %q; want exit %d and %q", tc.args, r.code, r.stdout+r.stderr, tc.code, tc.want)
		}
	}
	// The helper modes are internal: an unknown one fails.
	r := run(t, []string{demoHelperEnv + "=bogus"}, "{}", "demo")
	if r.code != exitFailure || !strings.Contains(r.stderr, "internal") {
		t.Errorf("bogus helper mode: exit %d, stderr %q", r.code, r.stderr)
	}
	// A process started by a server as its plugin never enters a helper
	// mode (the scanner reads whole address spaces), even with the
	// variable set.
	r = run(t, []string{demoHelperEnv + "=scan", plugins.Handshake.MagicCookieKey + "=" + plugins.Handshake.MagicCookieValue},
		`{"pid":1,"patterns":"/nonexistent"}`, "demo")
	if r.code != exitFailure || !strings.Contains(r.stderr, "started as a plugin") {
		t.Errorf("helper mode in a plugin process: exit %d, stderr %q", r.code, r.stderr)
	}
}
