// Package testenv starts real hardware stand-ins for tests: SoftHSM2 tokens
// and swtpm TPM 2.0 simulators, each in its own temporary directory, on
// loopback ports or unix sockets, stopped and removed when the test ends.
//
// When a tool is missing the test is skipped with a message that says how to
// install it, unless TWOWAY_HSM_REQUIRED=1 is set (CI sets it), in which case
// the test fails instead: CI never silently skips a hardware test.
package testenv

import (
	"os"
	"testing"
)

// RequiredEnv is the environment variable that turns a missing tool from a
// skip into a failure.
const RequiredEnv = "TWOWAY_HSM_REQUIRED"

// Required reports whether hardware tests must run (TWOWAY_HSM_REQUIRED=1).
func Required() bool { return os.Getenv(RequiredEnv) == "1" }

// Unavailable skips t with msg, or fails it when hardware tests are required.
func Unavailable(t testing.TB, msg string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (%s=1, so this is a failure, not a skip)", msg, RequiredEnv)
	}
	t.Skip(msg)
}
