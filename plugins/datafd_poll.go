//go:build unix && !linux

package plugins

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// See datafd_linux.go; here with poll(2) (millisecond timeouts), and
// close-on-exec set under syscall.ForkLock (not every one of these systems
// creates sockets close-on-exec).

func waitWritable(fd int, timeout time.Duration) error {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
	if _, err := unix.Poll(fds[:], ms); err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

// rawRead and rawWrite: see datafd_linux.go. Here they go through the
// scheduler's system-call path (not every one of these systems allows a
// raw system call).
func rawRead(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			return max(n, 0), err
		}
	}
}

func rawWrite(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if err != unix.EINTR {
			return max(n, 0), err
		}
	}
}

func socketPair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	return fds, err
}
