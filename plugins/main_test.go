package plugins_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// pluginBin is the real twoway-hsm binary, built once by TestMain.
var pluginBin string

// TestMain builds the twoway-hsm binary, runs the tests with a private
// TMPDIR (inherited by helper processes), and fails the run if any plugin
// socket directory is left behind in it.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "twoway-plugins-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	pluginBin = filepath.Join(tmp, "bin", "twoway-hsm")
	build := exec.Command("go", "build", "-o", pluginBin, "github.com/twoway-hsm/twoway-hsm/cmd/twoway-hsm")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building twoway-hsm: %v\n", err)
		return 1
	}
	os.Setenv("TMPDIR", tmp)
	code := m.Run()
	left, _ := filepath.Glob(filepath.Join(tmp, "twoway-hsm-plugin-*"))
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: plugin socket directories left behind: %v\n", left)
		if code == 0 {
			code = 1
		}
	}
	return code
}
