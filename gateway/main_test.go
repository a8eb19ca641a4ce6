package gateway_test

import (
	"os"
	"testing"
)

// TestMain removes the plugin binary that BenchmarkGateway builds.
func TestMain(m *testing.M) {
	code := m.Run()
	removePluginBinary()
	os.Exit(code)
}
