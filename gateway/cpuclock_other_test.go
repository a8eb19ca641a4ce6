//go:build !linux

package gateway_test

import (
	"errors"
	"time"
)

// processCPU is known on Linux only (see cpuclock_linux_test.go).
func processCPU(pid int) (time.Duration, error) {
	return 0, errors.ErrUnsupported
}
