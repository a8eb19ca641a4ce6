//go:build !linux

package swtpm

import "syscall"

// deathSignalAttr returns no attributes: only Linux has a parent-death
// signal.
func deathSignalAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
