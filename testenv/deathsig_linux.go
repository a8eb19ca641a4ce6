package testenv

import "syscall"

// deathSignalAttr asks the kernel to SIGKILL the child when the test binary
// dies (Linux's parent-death signal), so a test that panics or times out
// leaves nothing behind. Children with it are started by osthread.Start.
func deathSignalAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
