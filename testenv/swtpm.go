package testenv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/internal/osthread"
)

// swtpmInstallHint is the message for a missing swtpm.
const swtpmInstallHint = "swtpm swtpm-tools"

// SWTPM is a swtpm TPM 2.0 simulator started for one test, with its state
// in a temporary directory and its data and control channels on free
// loopback TCP ports (or unix sockets, see SWTPMUnixSocket). It is stopped
// when the test ends, so no swtpm outlives its test; it also dies with the
// test binary (SIGKILL via the parent-death signal on Linux).
//
// swtpm serves one connection at a time on its data channel: a second
// client waits until the first disconnects.
//
// The methods are meant to be called from the test's goroutine.
type SWTPM struct {
	tb        testing.TB
	swtpm     string
	ioctl     string
	dir       string // temporary directory: state, log, pid, sockets
	unix      bool
	port      int // data port (tcp); control port is port+1
	dataSock  string
	ctrlSock  string
	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{}
	exitErr   error
	starts    int
	cleanedUp bool
}

// SWTPMOption configures StartSWTPM.
type SWTPMOption func(*SWTPM)

// SWTPMUnixSocket makes swtpm listen on unix sockets in its temporary
// directory instead of loopback TCP ports.
func SWTPMUnixSocket() SWTPMOption { return func(s *SWTPM) { s.unix = true } }

// StartSWTPM starts a fresh swtpm (an unprovisioned TPM 2.0 with new seeds,
// started with TPM2_Startup(CLEAR)) and waits until it answers
// TPM2_GetRandom. It skips the test when swtpm or swtpm_ioctl is missing,
// unless TWOWAY_HSM_REQUIRED=1, in which case it fails.
func StartSWTPM(tb testing.TB, opts ...SWTPMOption) *SWTPM {
	tb.Helper()
	s := &SWTPM{
		tb:    tb,
		swtpm: LookTool(tb, "swtpm", swtpmInstallHint),
		ioctl: LookTool(tb, "swtpm_ioctl", swtpmInstallHint),
	}
	for _, o := range opts {
		o(s)
	}
	// A short directory name: unix socket paths are limited to 108 bytes,
	// and test names can be long.
	dir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		tb.Fatalf("swtpm: %v", err)
	}
	s.dir = dir
	if err := os.Mkdir(s.StateDir(), 0o700); err != nil {
		tb.Fatalf("swtpm: %v", err)
	}
	if s.unix {
		s.dataSock = filepath.Join(dir, "data.sock")
		s.ctrlSock = filepath.Join(dir, "ctrl.sock")
	}
	tb.Cleanup(s.cleanup)

	// Free ports can be taken between choosing and binding; try others.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if !s.unix {
			p, err := freePortPair()
			if err != nil {
				tb.Fatalf("swtpm: choosing ports: %v", err)
			}
			s.port = p
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		if s.unix {
			break
		}
	}
	tb.Fatalf("swtpm: %v\n%s", lastErr, s.logTail())
	return nil
}

// Transport returns the transport string for hsm/tpm2: "tcp:127.0.0.1:PORT"
// or "unix:/path/data.sock".
func (s *SWTPM) Transport() string {
	if s.unix {
		return "unix:" + s.dataSock
	}
	return "tcp:127.0.0.1:" + strconv.Itoa(s.port)
}

// StateDir returns the directory holding the TPM state (NVChip).
func (s *SWTPM) StateDir() string { return filepath.Join(s.dir, "state") }

// LogPath returns swtpm's log file, which also receives its stdout and
// stderr.
func (s *SWTPM) LogPath() string { return filepath.Join(s.dir, "swtpm.log") }

// Pid returns the process ID of the running swtpm, or 0.
func (s *SWTPM) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the swtpm process is running.
func (s *SWTPM) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Start starts swtpm again on the same state directory, ports or sockets,
// after Stop or Kill9. Transient objects and sessions are gone (the TPM
// starts with TPM2_Startup(CLEAR)); persistent objects and seeds remain.
func (s *SWTPM) Start() {
	s.tb.Helper()
	if s.Running() {
		s.tb.Fatalf("swtpm: Start: already running")
	}
	var err error
	// The ports were just released; binding them again can fail briefly.
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("swtpm: restart: %v\n%s", err, s.logTail())
}

// Stop shuts swtpm down gracefully (swtpm_ioctl -s on the control channel)
// and waits for it to exit, killing it if it does not within 5 seconds.
func (s *SWTPM) Stop() {
	s.tb.Helper()
	if err := s.stop(); err != nil {
		s.tb.Fatalf("swtpm: stop: %v\n%s", err, s.logTail())
	}
}

// Restart is Stop followed by Start.
func (s *SWTPM) Restart() {
	s.tb.Helper()
	s.Stop()
	s.Start()
}

// Kill9 kills swtpm with SIGKILL, as a crash would, and waits for it to
// exit. Start brings it back on the same state.
func (s *SWTPM) Kill9() {
	s.tb.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Kill)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		s.tb.Fatalf("swtpm: did not die after SIGKILL")
	}
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
}

// Init sends the TPM a hardware TPM_Init through the control channel
// (swtpm_ioctl -i), as a platform reset would, while the process and any
// client connection stay up. The TPM then needs TPM2_Startup, and all
// transient objects and sessions are gone.
func (s *SWTPM) Init() {
	s.tb.Helper()
	if out, err := s.runIoctl("-i"); err != nil {
		s.tb.Fatalf("swtpm: swtpm_ioctl -i: %v: %s", err, out)
	}
}

// ---------------------------------------------------------------------------

func (s *SWTPM) args() []string {
	a := []string{"socket", "--tpm2",
		"--tpmstate", "dir=" + s.StateDir(),
		"--flags", "not-need-init,startup-clear",
		"--pid", "file=" + filepath.Join(s.dir, "swtpm.pid"),
		"--log", "file=" + s.LogPath(),
	}
	if s.unix {
		a = append(a,
			"--server", "type=unixio,path="+s.dataSock,
			"--ctrl", "type=unixio,path="+s.ctrlSock)
	} else {
		a = append(a,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.port+1))
	}
	return a
}

// start launches swtpm and waits until it answers.
func (s *SWTPM) start() error {
	if s.unix {
		// A socket file left by a killed swtpm would make bind fail.
		os.Remove(s.dataSock)
		os.Remove(s.ctrlSock)
	}
	logf, err := os.OpenFile(s.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s: starting swtpm %v\n", time.Now().Format(time.RFC3339Nano), s.args())
	cmd := exec.Command(s.swtpm, s.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = deathSignalAttr()
	if err := osthread.Start(cmd); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.starts++
	s.mu.Unlock()

	if err := s.waitReady(exited, 15*time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		s.mu.Lock()
		s.cmd = nil
		s.mu.Unlock()
		return err
	}
	return nil
}

// waitReady polls the data channel with TPM2_GetRandom until swtpm answers.
func (s *SWTPM) waitReady(exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.mu.Lock()
			e := s.exitErr
			s.mu.Unlock()
			return fmt.Errorf("swtpm exited during start-up: %v", e)
		default:
		}
		if err = s.probe(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("swtpm did not answer within %v: %v", timeout, err)
}

// probe sends TPM2_GetRandom(8) as raw command bytes and checks the answer.
func (s *SWTPM) probe() error {
	network, addr := "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	if s.unix {
		network, addr = "unix", s.dataSock
	}
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	// tag TPM_ST_NO_SESSIONS, size 12, TPM_CC_GetRandom, bytesRequested 8
	cmd := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8}
	if _, err := c.Write(cmd); err != nil {
		return err
	}
	var hdr [10]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	if rc := binary.BigEndian.Uint32(hdr[6:]); rc != 0 {
		return fmt.Errorf("TPM2_GetRandom: response code 0x%x", rc)
	}
	rest := make([]byte, binary.BigEndian.Uint32(hdr[2:6])-10)
	_, err = io.ReadFull(c, rest)
	return err
}

func (s *SWTPM) runIoctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch := []string{"--tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port+1))}
	if s.unix {
		ch = []string{"--unix", s.ctrlSock}
	}
	return exec.CommandContext(ctx, s.ioctl, append(ch, args...)...).CombinedOutput()
}

func (s *SWTPM) stop() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	var errs []error
	select {
	case <-exited:
	default:
		if out, err := s.runIoctl("-s"); err != nil {
			errs = append(errs, fmt.Errorf("swtpm_ioctl -s: %v: %s", err, bytes.TrimSpace(out)))
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			errs = append(errs, errors.New("swtpm did not exit after swtpm_ioctl -s; killed it"))
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
	return errors.Join(errs...)
}

func (s *SWTPM) cleanup() {
	if s.cleanedUp {
		return
	}
	s.cleanedUp = true
	if err := s.stop(); err != nil {
		s.tb.Errorf("swtpm: stop at cleanup: %v", err)
	}
	if s.tb.Failed() {
		s.tb.Logf("swtpm log (%s):\n%s", s.LogPath(), s.logTail())
	}
	os.RemoveAll(s.dir)
}

func (s *SWTPM) logTail() string {
	b, _ := os.ReadFile(s.LogPath())
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// freePortPair returns a loopback port p such that p and p+1 are both free
// right now (swtpm's data and control ports).
func freePortPair() (int, error) {
	for i := 0; i < 50; i++ {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l1.Addr().(*net.TCPAddr).Port
		if p >= 65535 {
			l1.Close()
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l1.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("no free pair of consecutive ports")
}
