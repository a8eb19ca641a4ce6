// Package osthread starts child processes that die with their parent.
//
// Linux delivers the parent-death signal (SysProcAttr.Pdeathsig) when the
// thread that forked the child exits, not the process. A Go thread exits
// when a goroutine that locked it ends without unlocking it, which any code
// in the process may do; a child forked from that thread would die with it.
// A Thread is an OS thread that belongs to one goroutine and is used by
// nobody else, so the children it starts live until the process ends.
package osthread

import (
	"os/exec"
	"runtime"
	"sync"
)

// Thread runs functions on one OS thread that belongs to it alone.
type Thread struct {
	work chan func()
}

// New starts a Thread.
func New() *Thread {
	t := &Thread{work: make(chan func())}
	go func() {
		runtime.LockOSThread()
		// Unlock before returning: a locked thread would be terminated,
		// killing whatever another user started from it with a
		// parent-death signal (the processes this one started are gone by
		// the time Stop is called).
		defer runtime.UnlockOSThread()
		for f := range t.work {
			f()
		}
	}()
	return t
}

// Run calls f on the thread and waits for it.
func (t *Thread) Run(f func()) {
	done := make(chan struct{})
	t.work <- func() { defer close(done); f() }
	<-done
}

// Stop ends the thread's goroutine once pending work is done; the thread
// returns to the runtime. Call it only when every process it started has
// ended.
func (t *Thread) Stop() { close(t.work) }

var (
	shared     *Thread
	sharedOnce sync.Once
)

// Start starts cmd from a process-wide Thread that is never stopped, so a
// parent-death signal set in cmd.SysProcAttr fires only when this process
// ends.
func Start(cmd *exec.Cmd) error {
	sharedOnce.Do(func() { shared = New() })
	var err error
	shared.Run(func() { err = cmd.Start() })
	return err
}
