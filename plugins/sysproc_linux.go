package plugins

import (
	"strconv"
	"syscall"
)

// sysProcAttr makes the kernel SIGKILL the plugin when the thread that
// started it (an osthread.Thread of the host) dies, which it does when the host
// process dies, however it dies. The plugin gets a process group of its
// own, so that terminal signals meant for the host (Ctrl-C, Ctrl-\, Ctrl-Z)
// do not reach it: the host decides when its plugins stop.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// fdPath returns a path that names an open file descriptor of this
// process, for executing exactly the file that was checksummed.
func fdPath(fd uintptr) (string, bool) {
	return "/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10), true
}
