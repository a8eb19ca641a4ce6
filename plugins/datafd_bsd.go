//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package plugins

import (
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// See datafd_linux.go; here with poll(2) (millisecond timeouts) and a
// pipe as the waker.

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn  = 0x1
	pollOut = 0x4
)

func waitFD(fd int, events int16, wake int, timeout time.Duration) error {
	fds := [2]pollFd{{fd: int32(fd), events: events}, {fd: int32(wake), events: pollIn}}
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	_, _, e := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&fds[0])), 2, uintptr(ms))
	if e != 0 && e != syscall.EINTR {
		return e
	}
	return nil
}

var (
	wakeMu      sync.Mutex
	wakeWriters = map[int]int{} // a waker's read end to its write end
)

func newWaker() (fd int, closeFn func(), err error) {
	var p [2]int
	syscall.ForkLock.RLock()
	err = syscall.Pipe(p[:])
	if err == nil {
		syscall.CloseOnExec(p[0])
		syscall.CloseOnExec(p[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, nil, err
	}
	syscall.SetNonblock(p[0], true)
	syscall.SetNonblock(p[1], true)
	wakeMu.Lock()
	wakeWriters[p[0]] = p[1]
	wakeMu.Unlock()
	return p[0], func() {
		wakeMu.Lock()
		delete(wakeWriters, p[0])
		wakeMu.Unlock()
		syscall.Close(p[0])
		syscall.Close(p[1])
	}, nil
}

func wake(fd int) {
	wakeMu.Lock()
	w, ok := wakeWriters[fd]
	wakeMu.Unlock()
	if ok {
		_, _ = syscall.Write(w, []byte{1})
	}
}

func drain(fd int) {
	var b [64]byte
	for {
		if n, _ := syscall.Read(fd, b[:]); n <= 0 {
			return
		}
	}
}

func socketPair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	return fds, err
}

func checkDataSocket(fd int) error {
	typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil {
		return err
	}
	if typ != syscall.SOCK_STREAM {
		return syscall.ENOTSOCK
	}
	return nil
}
