package swtpm

import "syscall"

// deathSignalAttr asks the kernel to SIGKILL swtpm when this process dies
// (Linux's parent-death signal), so that a crashed or killed parent leaves
// no simulator behind. Children with it are started by osthread.Start.
func deathSignalAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
