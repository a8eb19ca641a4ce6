package swtpm_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/testenv/swtpm"
)

// TestDetachedStopDir starts a detached instance, as "twoway-hsm env up"
// does, and stops it from its directory alone, as "env down" does.
func TestDetachedStopDir(t *testing.T) {
	if _, _, err := swtpm.FindBinaries(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, unix := range []bool{false, true} {
		dir, err := os.MkdirTemp("", "swtpm-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		in, err := swtpm.Start(ctx, swtpm.Config{Dir: dir, Unix: unix, Detached: true})
		if err != nil {
			t.Fatal(err)
		}
		pid := in.Pid()
		if pid == 0 || !in.Running() {
			t.Fatal("not running")
		}
		if err := swtpm.StopDir(ctx, dir); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for in.Running() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if in.Running() || syscall.Kill(pid, 0) == nil {
			t.Fatalf("swtpm %d still running after StopDir", pid)
		}
		if err := swtpm.StopDir(ctx, dir); err != nil {
			t.Fatalf("second StopDir: %v", err)
		}
	}
}

// TestStopDirSparesReusedPid: when the pid in instance.json now belongs to
// another process - another swtpm, or something else entirely - StopDir
// signals nothing and just removes the stale record.
func TestStopDirSparesReusedPid(t *testing.T) {
	if _, _, err := swtpm.FindBinaries(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func() *swtpm.Instance {
		in, err := swtpm.Start(ctx, swtpm.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Stop(context.Background()) })
		return in
	}
	a, b := start(), start()
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()

	record := filepath.Join(a.Dir(), "instance.json")
	orig, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]int{"another swtpm": b.Pid(), "another process": sleep.Process.Pid} {
		var st map[string]any
		if err := json.Unmarshal(orig, &st); err != nil {
			t.Fatal(err)
		}
		st["pid"] = pid
		stale, _ := json.Marshal(st)
		if err := os.WriteFile(record, stale, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := swtpm.StopDir(ctx, a.Dir()); err != nil {
			t.Fatalf("%s: StopDir: %v", name, err)
		}
		if _, err := os.Stat(record); !os.IsNotExist(err) {
			t.Errorf("%s: stale instance.json not removed: %v", name, err)
		}
		if syscall.Kill(pid, 0) != nil {
			t.Fatalf("%s: StopDir killed process %d", name, pid)
		}
		if !a.Running() || !b.Running() {
			t.Fatalf("%s: StopDir stopped an swtpm", name)
		}
	}
}
