package plugins_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// helperEnv selects a helper mode of the test binary (see runHelper), and
// helperConfigEnv carries its configuration.
const (
	helperEnv       = "TWOWAY_PLUGINS_TEST_HELPER"
	helperConfigEnv = "TWOWAY_PLUGINS_TEST_HELPER_CONFIG"
)

// helperConfig configures a helper server process. It holds key
// references and the plugin's environment, never key material.
type helperConfig struct {
	Plugin    string   `json:"plugin"`
	Refs      []string `json:"refs"`
	Env       []string `json:"env"`
	Rounds    int      `json:"rounds"`
	Processes int      `json:"processes"`
}

// runHelper is the "server" helper: a separate process (this test binary,
// re-executed) that loads the plugin, opens requests and seals responses
// through it (Rounds round trips per key, of every shape in turn), prints
// "READY pid..." with the plugin process IDs, and then waits for its stdin
// to close before it shuts down. Tests scan its memory, or kill it, while
// it waits. Mode "bare" is the bare plugin (see barePlugin).
func runHelper(mode string) int {
	if mode == "bare" {
		return runBareHelper()
	}
	if mode != "server" {
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		return 2
	}
	var cfg helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(helperConfigEnv)), &cfg); err != nil {
		fmt.Printf("ERROR config: %v\n", err)
		return 1
	}
	// The configuration names a PIN variable of the plugin's environment;
	// drop ours so that nothing of it lingers here beyond Config.Env.
	os.Unsetenv(helperConfigEnv)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := plugins.NewClient(plugins.Config{Path: cfg.Plugin, Keys: cfg.Refs, Env: cfg.Env, Processes: cfg.Processes, Logger: logger})
	if err != nil {
		fmt.Printf("ERROR start: %v\n", err)
		return 1
	}
	defer plugins.CleanupClients()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ref := range cfg.Refs {
		k, err := c.Key(ctx, ref)
		if err != nil {
			fmt.Printf("ERROR key: %v\n", err)
			return 1
		}
		rt, err := roundtrip.New(k, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, 3000)
		if err != nil {
			fmt.Printf("ERROR key: %v\n", err)
			return 1
		}
		for i := range cfg.Rounds {
			s := roundtrip.Shape(i % int(roundtrip.NumShapes))
			if err := rt.Run(ctx, s); err != nil {
				fmt.Printf("ERROR round %d (%s): %v\n", i, s, err)
				return 1
			}
		}
	}
	var pids []string
	for _, p := range c.PIDs() {
		pids = append(pids, strconv.Itoa(p))
	}
	fmt.Printf("READY %s\n", strings.Join(pids, " "))
	io.Copy(io.Discard, os.Stdin)
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "close: %v\n", err)
		return 1
	}
	return 0
}

// helperServer is a running helper server process.
type helperServer struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	plugins []int
	waited  bool
}

// startHelperServer starts a helper server and waits until it is READY.
func startHelperServer(t testing.TB, cfg helperConfig) *helperServer {
	t.Helper()
	cfg.Plugin = pluginBin
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=server", helperConfigEnv+"="+string(js))
	cmd.Stderr = tWriter{t}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperServer{cmd: cmd, stdin: stdin}
	t.Cleanup(h.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper server: %v", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "READY")
	if !ok {
		t.Fatalf("helper server: %s", line)
	}
	for _, f := range strings.Fields(rest) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("helper server: bad pid %q", f)
		}
		h.plugins = append(h.plugins, pid)
	}
	if len(h.plugins) == 0 {
		t.Fatal("helper server reports no plugin process")
	}
	return h
}

func (h *helperServer) pid() int { return h.cmd.Process.Pid }

// stop closes the helper's stdin and waits for it to exit.
func (h *helperServer) stop() {
	if h.waited {
		return
	}
	h.stdin.Close()
	done := make(chan struct{})
	go func() { h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		h.cmd.Process.Kill()
		<-done
	}
	h.waited = true
}
