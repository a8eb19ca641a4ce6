//go:build unix

package plugins

import "syscall"

// Descriptor operations of the data channel, apart so that the package
// builds where there is none (datafd_other.go).

func sysRead(fd int, b []byte) (int, error)  { return syscall.Read(fd, b) }
func sysWrite(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }
func sysClose(fd int)                        { _ = syscall.Close(fd) }
func sysShutdown(fd int)                     { _ = syscall.Shutdown(fd, syscall.SHUT_RDWR) }
func setNonblock(fd int) error               { return syscall.SetNonblock(fd, true) }
func closeOnExec(fd int)                     { syscall.CloseOnExec(fd) }

func sysShutdownWrite(fd int) { _ = syscall.Shutdown(fd, syscall.SHUT_WR) }
func isAgain(err error) bool  { return err == syscall.EAGAIN || err == syscall.EINTR }
