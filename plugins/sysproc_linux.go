package plugins

import (
	"os"
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

// fdAbove returns f, or when f's descriptor is below min a close-on-exec
// duplicate of it numbered min or more (closed with f by the caller's
// deferred Close of both). A plugin binary executed through
// /proc/self/fd/N must not sit on a number the child's ExtraFiles take
// (3 is the data channel): the child would execute the socket.
func fdAbove(f *os.File, min int) (*os.File, error) {
	if int(f.Fd()) >= min {
		return f, nil
	}
	nfd, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_DUPFD_CLOEXEC, uintptr(min))
	if e != 0 {
		return nil, e
	}
	return os.NewFile(nfd, f.Name()), nil
}
