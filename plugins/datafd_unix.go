//go:build unix

package plugins

import "golang.org/x/sys/unix"

// Descriptor operations of the data channel, apart so that the package
// builds where there is none (datafd_other.go). How a thread waits for a
// descriptor and how it is woken differ between Linux (datafd_linux.go)
// and the other unix systems (datafd_poll.go).

func sysRead(fd int, b []byte) (int, error)  { return unix.Read(fd, b) }
func sysWrite(fd int, b []byte) (int, error) { return unix.Write(fd, b) }
func sysClose(fd int)                        { _ = unix.Close(fd) }
func sysShutdown(fd int)                     { _ = unix.Shutdown(fd, unix.SHUT_RDWR) }
func setNonblock(fd int) error               { return unix.SetNonblock(fd, true) }
func closeOnExec(fd int)                     { unix.CloseOnExec(fd) }

// isAgain reports whether a read or write on a nonblocking descriptor is
// to be tried again: it would have blocked, or a signal interrupted it.
func isAgain(err error) bool { return err == unix.EAGAIN || err == unix.EINTR }

// checkDataSocket checks that fd is a unix stream socket.
func checkDataSocket(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	if _, ok := sa.(*unix.SockaddrUnix); !ok || typ != unix.SOCK_STREAM {
		return unix.ENOTSOCK
	}
	return nil
}
