//go:build unix

package plugins

import "golang.org/x/sys/unix"

// Descriptor operations of the data channel, apart so that the package
// builds where there is none (datafd_other.go). Linux (datafd_linux.go)
// makes rawRead and rawWrite as raw system calls and waits for room to
// write with ppoll; the other unix systems (datafd_poll.go) go through
// the scheduler's system-call path and poll.

func sysClose(fd int)          { _ = unix.Close(fd) }
func sysShutdown(fd int)       { _ = unix.Shutdown(fd, unix.SHUT_RDWR) }
func setNonblock(fd int) error { return unix.SetNonblock(fd, true) }
func closeOnExec(fd int)       { unix.CloseOnExec(fd) }

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

// newChannel creates a data channel: the host's end and the plugin's, all
// four sockets close-on-exec. Each pair carries frames one way: the
// directions not used are shut down, so that a peer that reads where it
// should write gets the end at once, and one that writes where it should
// read gets EPIPE (on Linux; elsewhere its bytes may just be dropped).
func newChannel() (host, plugin channelEnd, err error) {
	req, err := socketPair() // host → plugin
	if err != nil {
		return channelEnd{-1, -1}, channelEnd{-1, -1}, err
	}
	ans, err := socketPair() // plugin → host
	if err != nil {
		sysClose(req[0])
		sysClose(req[1])
		return channelEnd{-1, -1}, channelEnd{-1, -1}, err
	}
	host = channelEnd{r: ans[0], w: req[0]}
	plugin = channelEnd{r: req[1], w: ans[1]}
	for _, sd := range []struct{ fd, how int }{{req[0], unix.SHUT_RD}, {ans[0], unix.SHUT_WR}} {
		if err := unix.Shutdown(sd.fd, sd.how); err != nil {
			host.close()
			plugin.close()
			return channelEnd{-1, -1}, channelEnd{-1, -1}, err
		}
	}
	return host, plugin, nil
}
