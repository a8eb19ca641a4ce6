package plugins

import (
	"syscall"
	"time"
	"unsafe"
)

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn  = 0x1
	pollOut = 0x4
)

// waitFD blocks the calling thread until fd is ready for events (pollIn
// or pollOut), or wake's descriptor is readable, or timeout passes (a
// negative timeout waits without end). It is a blocking system call on
// purpose, not Go's network poller: the caller waiting for its answer is
// the thread the answer wakes (see dataConn).
func waitFD(fd int, events int16, wake int, timeout time.Duration) error {
	fds := [2]pollFd{{fd: int32(fd), events: events}, {fd: int32(wake), events: pollIn}}
	var ts *syscall.Timespec
	if timeout >= 0 {
		t := syscall.NsecToTimespec(int64(timeout))
		ts = &t
	}
	_, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 2, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 && e != syscall.EINTR {
		return e
	}
	return nil
}

// newWaker returns a descriptor that wake makes readable and drain makes
// unreadable again (an eventfd), and how to close it.
func newWaker() (fd int, closeFn func(), err error) {
	r, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if e != 0 {
		return -1, nil, e
	}
	fd = int(r)
	return fd, func() { syscall.Close(fd) }, nil
}

var one = [8]byte{1}

// wake makes a waker readable.
func wake(fd int) { _, _ = syscall.Write(fd, one[:]) }

// drain makes a waker unreadable.
func drain(fd int) {
	var b [8]byte
	_, _ = syscall.Read(fd, b[:])
}

// socketPair returns a connected pair of unix stream sockets, both
// close-on-exec.
func socketPair() ([2]int, error) {
	return syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
}

// checkDataSocket checks that fd is a unix stream socket.
func checkDataSocket(fd int) error {
	typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil {
		return err
	}
	dom, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	if err != nil {
		return err
	}
	if typ != syscall.SOCK_STREAM || dom != syscall.AF_UNIX {
		return syscall.ENOTSOCK
	}
	return nil
}
