package plugins

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"
)

// The descriptors of a data channel (frame.go has its frames), as both
// ends use them: each reads one socket on Go's network poller and writes
// the other without it, with raw system calls (rawRead, rawWrite).

// channelEnd is one side's two sockets of a data channel: r carries the
// peer's frames to it, w carries its frames to the peer.
type channelEnd struct{ r, w int }

// close closes both sockets.
func (e channelEnd) close() {
	sysClose(e.r)
	sysClose(e.w)
}

// open takes over e: both sockets nonblocking, r on the network poller as
// a file whose read deadline wakes its reader. On an error it has closed
// e.
func (e channelEnd) open(name string) (*os.File, *socketReader, error) {
	err := setNonblock(e.r)
	if err == nil {
		err = setNonblock(e.w)
	}
	if err != nil {
		e.close()
		return nil, nil, err
	}
	f := os.NewFile(uintptr(e.r), name)
	rc, err := f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{}) // fails unless f is on the poller
	}
	if err != nil {
		f.Close()
		sysClose(e.w)
		return nil, nil, err
	}
	r := &socketReader{rc: rc}
	r.try = r.tryRead
	return f, r, nil
}

// socketReader reads an end's socket on the network poller with rawRead.
// It allocates nothing per read (a closure handed to RawConn.Read would
// escape); one goroutine at a time reads with it.
type socketReader struct {
	rc  syscall.RawConn
	try func(fd uintptr) bool // tryRead, bound once
	b   []byte
	n   int
	err error
}

func (r *socketReader) tryRead(fd uintptr) bool {
	r.n, r.err = rawRead(int(fd), r.b)
	return r.err != syscall.EAGAIN
}

// read reads into b, waiting until there is something to read, the peer
// ends (io.EOF), or the socket's read deadline passes
// (os.ErrDeadlineExceeded).
func (r *socketReader) read(b []byte) (int, error) {
	r.b = b
	err := r.rc.Read(r.try)
	r.b = nil
	switch {
	case err != nil:
		return 0, err
	case r.err != nil:
		return 0, r.err
	case r.n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// writeSlice bounds one wait for a socket to take a frame, between checks
// of whether to give up.
const writeSlice = 10 * time.Millisecond

// errGaveUp is writeAll's error when its stop says so.
var errGaveUp = errors.New("gave up waiting for the peer to read")

// writeAll writes b whole to the nonblocking socket fd, waiting while its
// buffer is full, and asking stop before each wait: when stop returns
// true it returns errGaveUp and how much it wrote.
func writeAll(fd int, b []byte, stop func() bool) (int, error) {
	written := 0
	for written < len(b) {
		m, err := rawWrite(fd, b[written:])
		written += m
		switch {
		case err == syscall.EAGAIN:
			if stop() {
				return written, errGaveUp
			}
			if err := waitWritable(fd, writeSlice); err != nil {
				return written, err
			}
		case err != nil:
			return written, err
		}
	}
	return written, nil
}
