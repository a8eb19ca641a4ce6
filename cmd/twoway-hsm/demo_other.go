//go:build !linux

package main

import "syscall"

// allowScanner is Linux-only (Yama); elsewhere the memory check is not
// available anyway (memscan reads /proc).
func allowScanner(int) {}

// helperSysProcAttr: no parent-death signal outside Linux; the helpers are
// short-lived and bounded by a timeout.
func helperSysProcAttr() *syscall.SysProcAttr { return nil }
