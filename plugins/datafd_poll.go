//go:build unix && !linux

package plugins

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// See datafd_linux.go; here with poll(2) (millisecond timeouts) and a
// pipe as the waker, and close-on-exec set under syscall.ForkLock (not
// every one of these systems creates sockets and pipes close-on-exec).

func waitFD(fd int, ev pollEvent, wake int, timeout time.Duration) error {
	fds := [2]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
	if ev == pollOut {
		fds[0].Events = unix.POLLOUT
	}
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	if _, err := unix.Poll(fds[:], ms); err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

var one = [1]byte{1}

// waker is a pipe: wake writes to it, drain empties it.
type waker struct{ r, w int }

func newWaker() (waker, error) {
	var p [2]int
	syscall.ForkLock.RLock()
	err := unix.Pipe(p[:])
	if err == nil {
		unix.CloseOnExec(p[0])
		unix.CloseOnExec(p[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return waker{-1, -1}, err
	}
	_ = unix.SetNonblock(p[0], true)
	_ = unix.SetNonblock(p[1], true)
	return waker{p[0], p[1]}, nil
}

func (w waker) readFD() int { return w.r }
func (w waker) wake()       { _, _ = unix.Write(w.w, one[:]) }
func (w waker) close()      { _ = unix.Close(w.r); _ = unix.Close(w.w) }

func (w waker) drain() {
	var b [64]byte
	for {
		if n, _ := unix.Read(w.r, b[:]); n <= 0 {
			return
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
