//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package plugins

import (
	"errors"
	"time"
)

// The data channel needs unix socket pairs and poll(2): elsewhere the
// package builds, and starting a plugin fails.

var errNoDataChannel = errors.New("plugins: the plugin data channel needs a unix system")

const (
	pollIn  = 0x1
	pollOut = 0x4
)

func waitFD(int, int16, int, time.Duration) error { return errNoDataChannel }
func newWaker() (int, func(), error)              { return -1, nil, errNoDataChannel }
func wake(int)                                    {}
func drain(int)                                   {}
func socketPair() ([2]int, error)                 { return [2]int{-1, -1}, errNoDataChannel }
func checkDataSocket(int) error                   { return errNoDataChannel }
func sysRead(int, []byte) (int, error)            { return 0, errNoDataChannel }
func sysWrite(int, []byte) (int, error)           { return 0, errNoDataChannel }
func sysClose(int)                                {}
func sysShutdown(int)                             {}
func setNonblock(int) error                       { return errNoDataChannel }
func closeOnExec(int)                             {}
func sysShutdownWrite(int)                        {}
func isAgain(error) bool                          { return false }
