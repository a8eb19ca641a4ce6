//go:build !unix

package plugins

import (
	"errors"
	"time"
)

// The data channel needs unix socket pairs and poll(2): elsewhere the
// package builds, and starting a plugin fails.

var errNoDataChannel = errors.New("plugins: the plugin data channel needs a unix system")

type waker struct{}

func newWaker() (waker, error)                        { return waker{}, errNoDataChannel }
func (waker) readFD() int                             { return -1 }
func (waker) wake()                                   {}
func (waker) drain()                                  {}
func (waker) close()                                  {}
func waitFD(int, pollEvent, int, time.Duration) error { return errNoDataChannel }
func socketPair() ([2]int, error)                     { return [2]int{-1, -1}, errNoDataChannel }
func checkDataSocket(int) error                       { return errNoDataChannel }
func sysRead(int, []byte) (int, error)                { return 0, errNoDataChannel }
func sysWrite(int, []byte) (int, error)               { return 0, errNoDataChannel }
func sysClose(int)                                    {}
func sysShutdown(int)                                 {}
func setNonblock(int) error                           { return errNoDataChannel }
func closeOnExec(int)                                 {}
func isAgain(error) bool                              { return false }
