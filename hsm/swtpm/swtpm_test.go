package swtpm_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/swtpm"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// TestDetachedStopDir starts a detached instance, as "twoway-hsm env up"
// does, and stops it from its directory alone, as "env down" does.
func TestDetachedStopDir(t *testing.T) {
	testenv.LookTool(t, "swtpm", "swtpm swtpm-tools")
	testenv.LookTool(t, "swtpm_ioctl", "swtpm swtpm-tools")
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
