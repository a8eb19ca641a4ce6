package plugins

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// waitWritable blocks the calling thread until fd is writable or timeout
// passes.
func waitWritable(fd int, timeout time.Duration) error {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	t := unix.NsecToTimespec(int64(timeout))
	if _, err := unix.Ppoll(fds[:], &t, nil); err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

// socketPair returns a connected pair of unix stream sockets, both
// close-on-exec.
func socketPair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}

// rawRead and rawWrite are read(2) and write(2) on a nonblocking
// descriptor made as raw system calls, without telling the Go scheduler
// (entersyscall): a call that cannot block needs no handing off of its P,
// and entering the scheduler's system-call path wakes its monitor thread
// when that sleeps, a thread wake-up on every call otherwise. EINTR is
// retried.
func rawRead(fd int, b []byte) (int, error)  { return rawIO(unix.SYS_READ, fd, b) }
func rawWrite(fd int, b []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, b) }

func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil // not 0 from read(2), which would mean the end
	}
	p := unsafe.Pointer(&b[0])
	for {
		n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(p), uintptr(len(b)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}
