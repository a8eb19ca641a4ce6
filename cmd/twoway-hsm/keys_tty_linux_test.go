package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/twoway-hsm/twoway-hsm/internal/syncbuf"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// openPTY returns the master and slave ends of a new pseudo-terminal. Without
// one the test skips, or fails when TWOWAY_HSM_REQUIRED=1 (CI).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testenv.Unavailable(t, "no pseudo-terminal for the terminal tests: "+err.Error())
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		testenv.Unavailable(t, "no pseudo-terminal for the terminal tests: unlockpt: "+e.Error())
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		m.Close()
		testenv.Unavailable(t, "no pseudo-terminal for the terminal tests: ptsname: "+e.Error())
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		testenv.Unavailable(t, "no pseudo-terminal for the terminal tests: "+err.Error())
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// ttyInput is a line to type once the command is ready for it: when its
// stderr shows prompt, and for a secret when the terminal no longer
// echoes.
type ttyInput struct {
	prompt string
	secret bool
	line   string
}

// echoOff reports whether the terminal has echo turned off.
func echoOff(f *os.File) bool {
	var tio syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); e != 0 {
		return false
	}
	return tio.Lflag&syscall.ECHO == 0
}

// runTTY runs the binary with a terminal as stdin, typing the inputs into
// it. The terminal's echo is returned as well: a PIN must not be in it.
func runTTY(t *testing.T, env []string, inputs []ttyInput, args ...string) (result, string) {
	t.Helper()
	master, slave := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = slave
	var out bytes.Buffer
	var errOut syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var echo syncbuf.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1024)
		for {
			n, err := master.Read(buf)
			echo.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var err error
	waiting := true
	for _, in := range inputs {
		ready := func() bool {
			return strings.Contains(errOut.String(), in.prompt) && (!in.secret || echoOff(slave))
		}
		for waiting && !ready() {
			select {
			case err = <-exited:
				waiting = false
			case <-time.After(10 * time.Millisecond):
			}
		}
		if !waiting {
			break
		}
		master.Write([]byte(in.line))
	}
	if waiting {
		err = <-exited
	}
	slave.Close()
	master.Close()
	<-done
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stdout: out.String(), stderr: errOut.String()}, echo.String()
}

// TestKeysTerminal: on a terminal the PIN is asked for without echo, and
// delete asks before it deletes.
func TestKeysTerminal(t *testing.T) {
	tok := testenv.SoftHSM(t)
	env := tok.Environ()
	mustRun(t, env, "keys", "create", tok.URI("id=%01"), "--kem", "p256")

	r, echo := runTTY(t, env, []ttyInput{{prompt: "PIN for", secret: true, line: tok.PIN + "\n"}}, "keys", "show", tok.URIWithoutPIN("id=%01"), "--json")
	if r.code != 0 || !strings.Contains(r.stderr, "PIN for pkcs11:") || !strings.Contains(r.stdout, `"kem": "p256"`) {
		t.Fatalf("show with a typed PIN: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr+echo, tok.PIN) {
		t.Fatal("the typed PIN was echoed or printed")
	}
	// no PIN is asked for a token that is not there
	r, _ = runTTY(t, env, nil, "keys", "show", strings.Replace(tok.URIWithoutPIN("id=%01"), tok.TokenLabel, "no-such-token", 1))
	if r.code != exitFailure || strings.Contains(r.stderr, "PIN for") || !strings.Contains(r.stderr, "token not found") {
		t.Fatalf("missing token on a terminal: exit %d, %s", r.code, r.stderr)
	}
	// delete: "no" keeps the key, "yes" deletes it
	r, _ = runTTY(t, env, []ttyInput{{prompt: "Type yes", line: "no\n"}}, "keys", "delete", tok.URI("id=%01"))
	if r.code != exitFailure || !strings.Contains(r.stderr, "Delete this key?") || !strings.Contains(r.stderr, "not deleted") {
		t.Fatalf("delete answered no: exit %d, %s", r.code, r.stderr)
	}
	mustRun(t, env, "keys", "show", tok.URI("id=%01"))
	r, _ = runTTY(t, env, []ttyInput{{prompt: "Type yes", line: "yes\n"}}, "keys", "delete", tok.URI("id=%01"))
	if r.code != 0 || !strings.Contains(r.stdout, "deleted") {
		t.Fatalf("delete answered yes: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	runFail(t, env, exitFailure, "no private key", "keys", "show", tok.URI("id=%01"))
}
