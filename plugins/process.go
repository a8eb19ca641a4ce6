package plugins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/twoway-hsm/twoway-hsm/internal/osthread"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// LogLevelEnv is the environment variable through which a host tells the
// plugin its log level ("debug" or "info"; the twoway-hsm plugin
// subcommand reads it).
const LogLevelEnv = "TWOWAY_HSM_PLUGIN_LOG_LEVEL"

// gracefulKillTimeout bounds a graceful plugin shutdown before SIGKILL.
const gracefulKillTimeout = 5 * time.Second

// proc is one running plugin process.
type proc struct {
	pc      *plugin.Client
	cmd     *exec.Cmd
	data    *dataConn
	ctl     *GRPCClient       // the control channel: Describe, Attest, Activate
	index   map[string]uint16 // key name to its index on the data channel
	desc    *Description
	pid     int
	started time.Time

	dead      atomic.Bool
	killOnce  sync.Once
	stopWatch context.CancelFunc
}

// startProcess starts one plugin process from thread and checks what it
// serves, within Config.StartTimeout and ctx's deadline. On error nothing
// is left running and the socket directory is gone.
func (c *Client) startProcess(ctx context.Context, thread *osthread.Thread, slot int) (p *proc, err error) {
	cfg := &c.cfg
	// One deadline for the whole start: the handshake and the first
	// Describe.
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("plugins: start %s: %w", cfg.Path, err)
	}
	deadline, _ := ctx.Deadline()
	// A private directory (0700) for the plugin's socket. It is removed as
	// soon as the host is connected: the connection lives on, no other
	// process can even try to connect, and a host killed later leaves no
	// socket file behind.
	dir, err := os.MkdirTemp("", "twoway-hsm-plugin-")
	if err != nil {
		return nil, fmt.Errorf("plugins: socket directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()

	execPath := cfg.Path
	var secure *plugin.SecureConfig
	if cfg.Checksum != nil {
		// Hash and execute the same open file: replacing the path after
		// the check cannot substitute another binary.
		bin, err := os.Open(cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("plugins: open plugin binary: %w", err)
		}
		defer bin.Close()
		// Well above the child's descriptors 0-4 (3 and 4 are the data channel)
		// and the few that os/exec's child moves out of their way above
		// them, so that its number still names the binary when the child
		// execs it.
		hi, err := fdAbove(bin, 16)
		if err != nil {
			return nil, fmt.Errorf("plugins: plugin binary descriptor: %w", err)
		}
		defer hi.Close()
		if fp, ok := fdPath(hi.Fd()); ok {
			execPath = fp
		}
		// A hash.Hash keeps state: each start needs a fresh one.
		secure = &plugin.SecureConfig{Checksum: cfg.Checksum, Hash: sha256.New()}
	}

	// The data channel: two socket pairs, one end of each for this
	// process, the others inherited by the plugin as descriptors 3
	// (requests) and 4 (answers). All are close-on-exec here, so no other
	// child gets them.
	hostEnd, plugEnd, err := newChannel()
	if err != nil {
		return nil, fmt.Errorf("plugins: data channel: %w", err)
	}
	plugIn := os.NewFile(uintptr(plugEnd.r), "twoway-hsm data channel (plugin's requests)")
	plugOut := os.NewFile(uintptr(plugEnd.w), "twoway-hsm data channel (plugin's answers)")
	defer plugIn.Close() // the plugin has its own copies once started (Close is idempotent)
	defer plugOut.Close()
	data, err := newDataConn(hostEnd)
	if err != nil {
		return nil, fmt.Errorf("plugins: data channel: %w", err)
	}
	defer func() {
		if err != nil {
			data.close()
		}
	}()

	cmd := exec.Command(execPath, cfg.Args...)
	cmd.Args[0] = cfg.Path
	cmd.ExtraFiles = []*os.File{plugIn, plugOut}
	level := "info"
	if cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		level = "debug"
	}
	cmd.Env = append(append([]string(nil), cfg.Env...),
		plugin.EnvUnixSocketDir+"="+dir,
		LogLevelEnv+"="+level,
		DataFDEnv+"=3,4")
	cmd.SysProcAttr = sysProcAttr()

	said := newFirstError(filepath.Base(cmd.Path)) // go-plugin's name for the plugin's records
	logger := cfg.Logger.With("plugin_bin", cfg.Path, "plugin_slot", slot)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: VersionedPlugins(nil),
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     max(time.Until(deadline), time.Millisecond), // 0 would mean go-plugin's default
		Logger:           &hclogAdapter{l: logger, level: new(atomic.Int32), noNames: true, errs: said},
		// No idle timeout: an idle connection that went away would look
		// like a dead plugin (see watch).
		GRPCDialOptions: []grpc.DialOption{grpc.WithIdleTimeout(0)},
	})
	defer func() {
		if err != nil {
			if cmd.Process != nil {
				_ = cmd.Process.Kill()
			}
			pc.Kill()
		}
	}()

	var cp plugin.ClientProtocol
	thread.Run(func() { cp, err = pc.Client() })
	// Started or not, the plugin's end is no longer this process's:
	// closed here, the channel ends as soon as the plugin's copies do.
	plugIn.Close()
	plugOut.Close()
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, fmt.Errorf("%w: %s", ErrChecksum, cfg.Path)
		}
		// A plugin that exits during start logs why just before; its log
		// line may still be on its way through go-plugin's stderr reader.
		if msg := said.wait(200 * time.Millisecond); msg != "" {
			return nil, &StartError{Path: cfg.Path, Reason: msg, Err: err}
		}
		return nil, fmt.Errorf("plugins: start %s: %w", cfg.Path, err)
	}
	raw, err := cp.Dispense(PluginName)
	if err != nil {
		return nil, fmt.Errorf("plugins: %s: %w", cfg.Path, err)
	}
	backend, ok := raw.(*GRPCClient)
	if !ok {
		return nil, fmt.Errorf("plugins: %s: unexpected plugin client %T", cfg.Path, raw)
	}
	desc, err := backend.Describe(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugins: %s: %w", cfg.Path, err)
	}
	if err := checkDescription(desc); err != nil {
		return nil, fmt.Errorf("plugins: %s: %w", cfg.Path, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("plugins: remove socket directory: %w", err)
	}
	index := make(map[string]uint16, len(desc.Keys))
	for i, k := range desc.Keys {
		index[k.Name] = uint16(i)
	}
	p = &proc{
		pc:      pc,
		cmd:     cmd,
		data:    data,
		ctl:     backend,
		index:   index,
		desc:    desc,
		pid:     cmd.Process.Pid,
		started: time.Now(),
	}
	wctx, stop := context.WithCancel(context.Background())
	p.stopWatch = stop
	if g, ok := cp.(*plugin.GRPCClient); ok {
		go p.watch(wctx, g.Conn)
	}
	logger.Info("plugin started", "pid", p.pid, "keys", len(desc.Keys), "version", desc.Plugin)
	return p, nil
}

// watch marks the process dead as soon as its gRPC connection leaves the
// READY state (the plugin exited or closed it), so that the next call
// starts a new one instead of failing. (Calls in flight learn it from the
// data channel.)
func (p *proc) watch(ctx context.Context, conn *grpc.ClientConn) {
	for {
		st := conn.GetState()
		if st != connectivity.Ready {
			p.dead.Store(true)
			return
		}
		if !conn.WaitForStateChange(ctx, st) {
			return
		}
	}
}

// kill stops the process: gracefully (the plugin closes its keys and
// exits; SIGKILL after gracefulKillTimeout) or at once. It waits for the
// process to be reaped. It is idempotent.
func (p *proc) kill(graceful bool) {
	p.killOnce.Do(func() {
		p.dead.Store(true)
		p.stopWatch()
		p.data.close()
		if !graceful {
			_ = p.cmd.Process.Kill()
		}
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(gracefulKillTimeout):
				_ = p.cmd.Process.Kill()
			}
		}()
		p.pc.Kill()
		close(done)
	})
}

// checkDescription checks what a plugin says it serves.
func checkDescription(d *Description) error {
	if len(d.Keys) == 0 {
		return fmt.Errorf("the plugin serves no keys")
	}
	if len(d.Keys) > 1<<16 {
		return fmt.Errorf("the plugin serves %d keys, more than a key index can name", len(d.Keys))
	}
	seen := make(map[string]bool)
	for _, k := range d.Keys {
		if k.Name == "" || seen[k.Name] {
			return fmt.Errorf("the plugin serves an empty or repeated key name %q", k.Name)
		}
		seen[k.Name] = true
		if err := kem.CheckPublicKey(k.KEM, k.PublicKey); err != nil {
			return fmt.Errorf("key %s: %w", k.Name, err)
		}
	}
	return nil
}

// sameKeys reports whether two descriptions list the same keys with the
// same public keys, in any order.
func sameKeys(a, b *Description) bool {
	if len(a.Keys) != len(b.Keys) {
		return false
	}
	m := make(map[string]KeyInfo, len(a.Keys))
	for _, k := range a.Keys {
		m[k.Name] = k
	}
	for _, k := range b.Keys {
		o, ok := m[k.Name]
		if !ok || o.KEM != k.KEM || o.Backend != k.Backend || string(o.PublicKey) != string(k.PublicKey) {
			return false
		}
	}
	return true
}
