//go:build !unix

package plugins

import (
	"errors"
	"time"
)

// The data channel needs unix socket pairs and poll(2): elsewhere the
// package builds, and starting a plugin fails.

var errNoDataChannel = errors.New("plugins: the plugin data channel needs a unix system")

func waitWritable(int, time.Duration) error { return errNoDataChannel }
func rawRead(int, []byte) (int, error)      { return 0, errNoDataChannel }
func rawWrite(int, []byte) (int, error)     { return 0, errNoDataChannel }
func newChannel() (channelEnd, channelEnd, error) {
	return channelEnd{-1, -1}, channelEnd{-1, -1}, errNoDataChannel
}
func checkDataSocket(int) error { return errNoDataChannel }
func sysClose(int)              {}
func sysShutdown(int)           {}
func setNonblock(int) error     { return errNoDataChannel }
func closeOnExec(int)           {}
