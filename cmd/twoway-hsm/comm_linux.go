package main

import (
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// A server that pins the plugin binary by checksum executes it through a
// file descriptor (/proc/self/fd/N), so the kernel names the process "N".
// Restore the name that ps, top and pgrep show. This runs in an init
// function, on the main thread, whose name is the process's.
func init() {
	if len(os.Args) < 2 || os.Args[1] != "plugin" {
		return
	}
	name := []byte(filepath.Base(os.Args[0]))
	if len(name) > 15 {
		name = name[:15]
	}
	name = append(name, 0)
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0)
}
