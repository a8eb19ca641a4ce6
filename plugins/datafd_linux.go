package plugins

import (
	"time"

	"golang.org/x/sys/unix"
)

// waitFD blocks the calling thread until fd is ready for ev, or wake's
// descriptor is readable (-1 for none), or timeout passes (a negative
// timeout waits without end). It is a blocking system call on purpose, not
// Go's network poller: the caller waiting for its answer is the thread the
// answer wakes (see dataConn).
func waitFD(fd int, ev pollEvent, wake int, timeout time.Duration) error {
	fds := [2]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
	if ev == pollOut {
		fds[0].Events = unix.POLLOUT
	}
	var ts *unix.Timespec
	if timeout >= 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	if _, err := unix.Ppoll(fds[:], ts, nil); err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

// waker is a descriptor that wake makes readable and drain makes
// unreadable again, for waitFD's wake: an eventfd.
type waker struct{ fd int }

func newWaker() (waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return waker{-1}, err
	}
	return waker{fd}, nil
}

var one = [8]byte{1}

// readFD is the descriptor to wait on (waitFD's wake).
func (w waker) readFD() int { return w.fd }
func (w waker) wake()       { _, _ = unix.Write(w.fd, one[:]) }
func (w waker) close()      { _ = unix.Close(w.fd) }

func (w waker) drain() {
	var b [8]byte
	_, _ = unix.Read(w.fd, b[:])
}

// socketPair returns a connected pair of unix stream sockets, both
// close-on-exec.
func socketPair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}
