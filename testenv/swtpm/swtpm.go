// Package swtpm runs swtpm, the libtpms-based TPM 2.0 simulator, for
// development, tests and the twoway-hsm demo: an instance in a directory of
// its own (state, log, pid file, sockets), on free loopback TCP ports or unix
// sockets, started with TPM2_Startup(CLEAR), stopped gracefully through its
// control channel.
//
// swtpm's data channel takes raw TPM command buffers and serves one
// connection at a time; its control channel speaks swtpm's own protocol
// (swtpm_ioctl). hsm/tpm2 reaches an instance through Instance.Transport.
package swtpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twoway-hsm/twoway-hsm/internal/osthread"
)

// InstallHint names the Debian packages that provide swtpm and swtpm_ioctl.
const InstallHint = "apt-get install -y swtpm swtpm-tools"

// ErrNotFound is returned when swtpm or swtpm_ioctl is not installed.
var ErrNotFound = errors.New("swtpm: not installed (" + InstallHint + ")")

// FindBinaries returns the paths of swtpm and swtpm_ioctl from PATH.
func FindBinaries() (swtpm, ioctl string, err error) {
	if swtpm, err = exec.LookPath("swtpm"); err != nil {
		return "", "", fmt.Errorf("%w: swtpm not in PATH", ErrNotFound)
	}
	if ioctl, err = exec.LookPath("swtpm_ioctl"); err != nil {
		return "", "", fmt.Errorf("%w: swtpm_ioctl not in PATH", ErrNotFound)
	}
	return swtpm, ioctl, nil
}

// Config describes an instance.
type Config struct {
	// Dir holds the instance: state/ (the TPM's NVChip), swtpm.log,
	// swtpm.pid, instance.json and, with Unix, the sockets. It is created
	// (0700) if missing; keep it short with Unix (socket paths are limited
	// to 108 bytes).
	Dir string
	// Unix makes swtpm listen on unix sockets in Dir instead of loopback
	// TCP ports.
	Unix bool
	// Port is the data port (the control port is Port+1); 0 picks free
	// ports.
	Port int
	// Detached lets swtpm outlive this process (a session of its own, no
	// parent-death signal): for development environments that StopDir
	// stops later. Otherwise swtpm is killed when this process dies.
	Detached bool
	// Swtpm and Ioctl are the binaries; empty means FindBinaries.
	Swtpm, Ioctl string
	// EKCertCA, when set, manufactures a fresh TPM before its first start
	// with swtpm_setup --create-ek-cert --create-platform-cert, signed by
	// the swtpm-localca CA in this directory (created there, root and
	// issuer, if it does not exist yet; see Provision). Instances given
	// the same directory share one CA.
	EKCertCA string
}

// Instance is a running swtpm. Its methods are safe for concurrent use.
type Instance struct {
	cfg      Config
	port     int
	dataSock string
	ctrlSock string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

// state is what instance.json records, for StopDir.
type state struct {
	Pid   int      `json:"pid"`
	Ctrl  []string `json:"ctrl_args"` // swtpm_ioctl's control channel arguments (ctrlArgs)
	Ioctl string   `json:"ioctl"`
}

// Start starts a swtpm instance and waits until it answers TPM2_GetRandom.
// A fresh Dir gives an unprovisioned TPM with new seeds; an existing one
// brings its TPM back.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	if cfg.Dir == "" {
		return nil, errors.New("swtpm: no directory")
	}
	if cfg.Swtpm == "" || cfg.Ioctl == "" {
		s, i, err := FindBinaries()
		if err != nil {
			return nil, err
		}
		if cfg.Swtpm == "" {
			cfg.Swtpm = s
		}
		if cfg.Ioctl == "" {
			cfg.Ioctl = i
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "state"), 0o700); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}
	if cfg.EKCertCA != "" {
		if err := Provision(ctx, filepath.Join(cfg.Dir, "state"), cfg.EKCertCA); err != nil {
			return nil, err
		}
	}
	in := &Instance{cfg: cfg}
	if cfg.Unix {
		in.dataSock = filepath.Join(cfg.Dir, "data.sock")
		in.ctrlSock = filepath.Join(cfg.Dir, "data.sock.ctrl") // where the swtpm TCTI of tpm2-tools and tpm2-openssl looks
	}
	// Free ports can be taken between choosing and binding; try others.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if !cfg.Unix {
			in.port = cfg.Port
			if in.port == 0 {
				p, err := freePortPair()
				if err != nil {
					return nil, fmt.Errorf("swtpm: choosing ports: %w", err)
				}
				in.port = p
			}
		}
		if lastErr = in.start(ctx); lastErr == nil {
			return in, nil
		}
		if cfg.Unix || cfg.Port != 0 || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("swtpm: %w\n%s", lastErr, in.LogTail())
}

// Transport returns the transport string for hsm/tpm2:
// "tcp:127.0.0.1:PORT" or "unix:/path/data.sock".
func (in *Instance) Transport() string {
	network, addr := in.dataAddr()
	return network + ":" + addr
}

// dataAddr returns the network and address of the data channel.
func (in *Instance) dataAddr() (network, addr string) {
	if in.cfg.Unix {
		return "unix", in.dataSock
	}
	return "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port))
}

// Dir returns the instance's directory.
func (in *Instance) Dir() string { return in.cfg.Dir }

// StateDir returns the directory holding the TPM state (NVChip).
func (in *Instance) StateDir() string { return filepath.Join(in.cfg.Dir, "state") }

// LogPath returns swtpm's log file, which also receives its output.
func (in *Instance) LogPath() string { return filepath.Join(in.cfg.Dir, "swtpm.log") }

// Pid returns the process ID of the running swtpm, or 0.
func (in *Instance) Pid() int {
	if cmd, exited := in.proc(); cmd != nil && !isClosed(exited) {
		return cmd.Process.Pid
	}
	return 0
}

// Running reports whether the swtpm process is running.
func (in *Instance) Running() bool { return in.Pid() != 0 }

// proc returns the swtpm process last started and the channel that is
// closed when it has exited (nil, nil before the first start).
func (in *Instance) proc() (*exec.Cmd, <-chan struct{}) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cmd, in.exited
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Restart starts swtpm again on the same state, ports or sockets, after
// Stop or Kill. Transient objects and sessions are gone (TPM2_Startup(CLEAR));
// persistent objects and seeds remain.
func (in *Instance) Restart(ctx context.Context) error {
	if in.Running() {
		return errors.New("swtpm: restart: already running")
	}
	var err error
	// The ports were just released; binding them again can fail briefly.
	for attempt := 0; attempt < 20; attempt++ {
		if err = in.start(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("swtpm: restart: %w\n%s", err, in.LogTail())
}

// Stop shuts swtpm down gracefully (swtpm_ioctl -s on the control channel)
// and waits for it to exit, killing it if it does not within 5 seconds.
func (in *Instance) Stop(ctx context.Context) error {
	var errs []error
	if cmd, exited := in.proc(); cmd != nil && !isClosed(exited) {
		if out, err := runIoctl(ctx, in.cfg.Ioctl, in.ctrlArgs(), "-s"); err != nil {
			errs = append(errs, fmt.Errorf("swtpm_ioctl -s: %v: %s", err, bytes.TrimSpace(out)))
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			errs = append(errs, errors.New("swtpm did not exit after swtpm_ioctl -s; killed it"))
			errs = append(errs, kill(cmd, exited))
		}
	}
	os.Remove(in.statePath())
	return errors.Join(errs...)
}

// Kill kills swtpm with SIGKILL, as a crash would, and waits for it to
// exit. Restart brings it back on the same state.
func (in *Instance) Kill() error {
	cmd, exited := in.proc()
	if cmd == nil {
		return nil
	}
	return kill(cmd, exited)
}

// kill sends cmd SIGKILL and waits for it to exit (exited closes).
func kill(cmd *exec.Cmd, exited <-chan struct{}) error {
	_ = cmd.Process.Kill() // fails only if it has exited already
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("swtpm: process %d did not die after SIGKILL", cmd.Process.Pid)
	}
}

// Init sends the TPM a hardware TPM_Init through the control channel
// (swtpm_ioctl -i), as a platform reset would, while the process and any
// client connection stay up.
func (in *Instance) Init(ctx context.Context) error {
	if out, err := runIoctl(ctx, in.cfg.Ioctl, in.ctrlArgs(), "-i"); err != nil {
		return fmt.Errorf("swtpm_ioctl -i: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// LogTail returns the end of swtpm's log, for error messages.
func (in *Instance) LogTail() string {
	b, _ := os.ReadFile(in.LogPath())
	const tail = 4000
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(b)
}

// statePath returns the path of instance.json.
func (in *Instance) statePath() string { return filepath.Join(in.cfg.Dir, "instance.json") }

// StopDir stops a detached instance started in dir (by this or another
// process), using the instance.json it left there; it is not an error if
// none is running. It signals only the swtpm that serves dir's state: the
// pid recorded may since have been reused, by any process or by another
// swtpm.
func StopDir(ctx context.Context, dir string) error {
	path := filepath.Join(dir, "instance.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("swtpm: %s: %w", path, err)
	}
	stateDir := filepath.Join(dir, "state")
	running := func() bool { return servesState(st.Pid, stateDir) }
	if running() {
		if _, err := runIoctl(ctx, st.Ioctl, st.Ctrl, "-s"); err != nil {
			_ = syscall.Kill(st.Pid, syscall.SIGTERM)
		}
		if !waitUntil(5*time.Second, func() bool { return !running() }) {
			_ = syscall.Kill(st.Pid, syscall.SIGKILL)
			if !waitUntil(time.Second, func() bool { return !running() }) {
				return fmt.Errorf("swtpm: process %d would not stop", st.Pid)
			}
		}
	}
	return os.Remove(path)
}

// servesState reports whether pid is a live swtpm process whose TPM state
// (--tpmstate dir=) is stateDir. A zombie has no command line, so it does
// not count. Without /proc (not Linux) it can only tell whether pid is
// alive.
func servesState(pid int, stateDir string) bool {
	if pid <= 0 {
		return false
	}
	proc := "/proc/" + strconv.Itoa(pid)
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		if _, err := os.Stat("/proc/self"); err != nil {
			return syscall.Kill(pid, 0) == nil
		}
		return false
	}
	want, err := os.Stat(stateDir)
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	for i := 1; i < len(args); i++ {
		dir, ok := strings.CutPrefix(args[i], "dir=")
		if !ok || args[i-1] != "--tpmstate" {
			continue
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(proc, "cwd", dir)
		}
		fi, err := os.Stat(dir)
		return err == nil && os.SameFile(fi, want)
	}
	return false
}

// waitUntil polls cond for up to d and reports whether it became true.
func waitUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func (in *Instance) args() []string {
	a := []string{"socket", "--tpm2",
		"--tpmstate", "dir=" + in.StateDir(),
		"--flags", "not-need-init,startup-clear",
		"--pid", "file=" + filepath.Join(in.cfg.Dir, "swtpm.pid"),
		"--log", "file=" + in.LogPath(),
	}
	if in.cfg.Unix {
		return append(a,
			"--server", "type=unixio,path="+in.dataSock,
			"--ctrl", "type=unixio,path="+in.ctrlSock)
	}
	return append(a,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", in.port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", in.port+1))
}

// ctrlArgs returns swtpm_ioctl's arguments that name the control channel.
func (in *Instance) ctrlArgs() []string {
	if in.cfg.Unix {
		return []string{"--unix", in.ctrlSock}
	}
	return []string{"--tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port+1))}
}

// start launches swtpm and waits until it answers.
func (in *Instance) start(ctx context.Context) error {
	if in.cfg.Unix {
		// A socket file left by a killed swtpm would make bind fail.
		os.Remove(in.dataSock)
		os.Remove(in.ctrlSock)
	}
	logf, err := os.OpenFile(in.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s: starting swtpm %v\n", time.Now().Format(time.RFC3339Nano), in.args())
	cmd := exec.Command(in.cfg.Swtpm, in.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if in.cfg.Detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = cmd.Start()
	} else {
		cmd.SysProcAttr = deathSignalAttr()
		err = osthread.Start(cmd)
	}
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		in.mu.Lock()
		in.exitErr = err
		in.mu.Unlock()
		close(exited)
	}()
	in.mu.Lock()
	in.cmd, in.exited = cmd, exited
	in.mu.Unlock()

	if err := in.waitReady(ctx, exited, 15*time.Second); err != nil {
		return errors.Join(err, kill(cmd, exited))
	}
	st, _ := json.Marshal(state{Pid: cmd.Process.Pid, Ctrl: in.ctrlArgs(), Ioctl: in.cfg.Ioctl})
	return os.WriteFile(in.statePath(), st, 0o600)
}

// waitReady polls the data channel with TPM2_GetRandom until swtpm answers.
func (in *Instance) waitReady(ctx context.Context, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			in.mu.Lock()
			e := in.exitErr
			in.mu.Unlock()
			return fmt.Errorf("swtpm exited during start-up: %v", e)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if err = in.probe(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("swtpm did not answer within %v: %v", timeout, err)
}

// probe sends TPM2_GetRandom(8) as raw command bytes and checks the answer.
func (in *Instance) probe() error {
	network, addr := in.dataAddr()
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
	// The answer is 10 + 2 + 8 bytes; anything else is not a TPM talking.
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 64 {
		return fmt.Errorf("TPM2_GetRandom: bad response size %d", size)
	}
	rest := make([]byte, size-10)
	_, err = io.ReadFull(c, rest)
	return err
}

func runIoctl(ctx context.Context, ioctl string, ctrl []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, ioctl, append(append([]string{}, ctrl...), args...)...).CombinedOutput()
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
