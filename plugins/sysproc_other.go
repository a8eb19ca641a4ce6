//go:build !linux

package plugins

import (
	"os"
	"syscall"
)

// sysProcAttr: only Linux has a parent-death signal; elsewhere the plugin
// notices that its host is gone by its parent process ID (see Serve).
func sysProcAttr() *syscall.SysProcAttr { return nil }

// fdPath: executing a file through its descriptor needs /proc/self/fd;
// elsewhere the checksummed path itself is executed.
func fdPath(uintptr) (string, bool) { return "", false }

// fdAbove: the descriptor's number matters only for fdPath.
func fdAbove(f *os.File, _ int) (*os.File, error) { return f, nil }
