package main

import "syscall"

// prSetPtracer is Yama's prctl option PR_SET_PTRACER.
const prSetPtracer = 0x59616d61

// allowScanner lets process pid (the demo's scan helper) read this
// process's memory where Yama's ptrace_scope=1 (the default on Ubuntu)
// would allow only ancestors; pid 0 withdraws the permission. Without Yama
// the call fails harmlessly and the usual same-user rule applies.
func allowScanner(pid int) {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetPtracer, uintptr(pid), 0)
}

// helperSysProcAttr makes the kernel kill a helper process when the demo
// dies (the helper is started from a thread that lives as long as the
// process: see internal/osthread).
func helperSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
