package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/twoway-hsm/twoway-hsm/internal/latency"
	"github.com/twoway-hsm/twoway-hsm/internal/memscan"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore/softstore"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
	"github.com/twoway-hsm/twoway-hsm/testenv/swtpm"
)

const demoUsage = `Usage: twoway-hsm demo [--json] [--keep] [-n N] [-v]

Runs the whole twoway-hsm flow on this machine, with nothing to set up:
for each backend, a throw-away key is provisioned, a plugin process (this
binary, as 'twoway-hsm plugin') serves it, and this process, playing the
server, opens requests and seals responses through the plugin while a
client sends them (one-to-one and one-to-many, unchunked and chunked).

Backends:
  soft     a software key file (always; the key is in the plugin's memory)
  pkcs11   a SoftHSM2 token, when softhsm2 is installed
  tpm2     a swtpm TPM 2.0 simulator, when swtpm and swtpm-tools are installed

Then it checks that the private key never entered the server process: the
keys are made by a short-lived helper process, which hands the demo only a
masked copy, and after the round trips another helper searches this
process's memory for each key, in both byte orders. As a control, the soft
backend's plugin process, which does hold its key, is searched too.

It prints one table: the backend, the KEM, the round trips, the median
decapsulation time (the call into the plugin), and the result of the
memory check. Everything it starts (plugins, swtpm) is stopped and its
temporary directory removed when it ends, also on Ctrl-C.

Example:
  go run ./cmd/twoway-hsm demo
  twoway-hsm demo --json

Exit status: 0 when every installed backend worked (missing ones are
noted, with how to install them), 1 when a round trip failed or a key was
found in the server's memory, 2 on a usage error.
`

// demoRoundTrips is the default number of round trips per backend, half
// of them chunked.
const demoRoundTrips = 8

// demoMessageSize is the size of the demo's requests and responses: a few
// chunks when chunked.
const demoMessageSize = 3000

// demoReport is the demo's result; --json prints it as is.
type demoReport struct {
	ServerPID int           `json:"server_pid"`
	TempDir   string        `json:"temp_dir"`
	Kept      bool          `json:"kept"`
	Backends  []*demoRow    `json:"backends"`
	Missing   []demoMissing `json:"missing"`
	OK        bool          `json:"ok"`
}

// demoRow is one backend's line of the table.
type demoRow struct {
	Backend     string  `json:"backend"`
	KEM         string  `json:"kem,omitempty"`
	Key         string  `json:"key,omitempty"` // the reference the plugin served
	RoundTrips  int     `json:"round_trips"`
	OK          int     `json:"ok"`
	DecapP50MS  float64 `json:"decapsulation_p50_ms"`
	KeyOutOfSrv string  `json:"key_out_of_server"` // "yes", "NO" or "not checked"
	// ServerScan is the search of the server (this) process for the key;
	// PluginScan the control search of the plugin process.
	ServerScan *demoScan `json:"server_scan,omitempty"`
	PluginScan *demoScan `json:"plugin_scan,omitempty"`
	PluginPIDs []int     `json:"plugin_pids"`
	SwtpmPID   int       `json:"swtpm_pid,omitempty"`
	Dir        string    `json:"dir"`
	Error      string    `json:"error,omitempty"`
}

// demoScan is the result of searching a process for a key.
type demoScan struct {
	PID     int     `json:"pid"`
	Hits    int     `json:"hits"`
	MiB     float64 `json:"mib"`
	Regions int     `json:"regions"`
	Error   string  `json:"error,omitempty"`
}

// demoMissing is a backend whose tool is not installed.
type demoMissing struct {
	Backend string `json:"backend"`
	Missing string `json:"missing"` // the tool
	Install string `json:"install"` // the command that installs it
	Note    string `json:"note,omitempty"`
}

// demo is one run of the demo.
type demo struct {
	env      *environment
	dir      string
	rounds   int
	verbose  bool
	cleanups []func()
}

func runDemo(ctx context.Context, env *environment, args []string) int {
	if mode := env.getenv(demoHelperEnv); mode != "" {
		return runDemoHelper(ctx, env, mode)
	}
	c := newCmdline(env, "demo", demoUsage)
	c.fs.BoolVar(&c.json, "json", false, "print the table as JSON")
	keep := c.fs.Bool("keep", false, "keep the temporary directory (keys, token, TPM state) for inspection; processes are stopped anyway")
	rounds := c.fs.Int("n", demoRoundTrips, "round trips per backend")
	verbose := c.fs.Bool("v", false, "print the plugins' logs on stderr")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.fail(usagef("unexpected argument %q", pos[0]))
	}
	if *rounds < 1 || *rounds > 10000 {
		return c.fail(usagef("-n must be between 1 and 10000"))
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	dir, err := os.MkdirTemp("", "twoway-hsm-demo-")
	if err != nil {
		fmt.Fprintf(env.stderr, "twoway-hsm demo: cannot make a temporary directory: %v (set TMPDIR to a writable directory)\n", err)
		return exitFailure
	}
	d := &demo{env: env, dir: dir, rounds: *rounds, verbose: *verbose}
	rep := &demoReport{ServerPID: os.Getpid(), TempDir: dir, Kept: *keep, Missing: []demoMissing{}}
	defer func() {
		d.cleanup()
		plugins.CleanupClients()
		if !*keep {
			os.RemoveAll(dir)
		}
	}()

	if !c.json && isTerminal(env.stderr) {
		fmt.Fprintln(env.stderr, "twoway-hsm demo: provisioning throw-away keys and running round trips through plugin processes...")
	}
	rep.Backends = append(rep.Backends, d.runBackend(ctx, "soft", ""))
	if _, err := softhsm.FindModule(""); err != nil {
		m := demoMissing{Backend: "pkcs11", Missing: "SoftHSM2", Install: softhsmInstall}
		if v := env.getenv(softhsm.ModuleEnv); v != "" {
			m.Note = fmt.Sprintf("%s=%s names no SoftHSM2 module: unset it or correct it", softhsm.ModuleEnv, v)
		}
		rep.Missing = append(rep.Missing, m)
	} else if ctx.Err() == nil {
		rep.Backends = append(rep.Backends, d.runBackend(ctx, "pkcs11", ""))
	}
	if _, _, err := swtpm.FindBinaries(); err != nil {
		rep.Missing = append(rep.Missing, demoMissing{Backend: "tpm2", Missing: "swtpm", Install: swtpm.InstallHint})
	} else if ctx.Err() == nil {
		rep.Backends = append(rep.Backends, d.runTPMBackend(ctx))
	}

	rep.OK = ctx.Err() == nil
	for _, r := range rep.Backends {
		if r.Error != "" || r.OK != r.RoundTrips || r.RoundTrips == 0 || r.KeyOutOfSrv == "NO" || controlFailed(r) {
			rep.OK = false
		}
	}
	// Stop and remove everything before printing, so that the processes
	// and the directory reported are gone.
	d.cleanup()
	if !*keep {
		os.RemoveAll(dir)
	}
	if c.json {
		if err := writeJSON(env.stdout, rep); err != nil {
			fmt.Fprintf(env.stderr, "twoway-hsm demo: %v\n", err)
			return exitFailure
		}
	} else {
		printDemo(env.stdout, rep, d.rounds)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(env.stderr, "twoway-hsm demo: interrupted; everything it started is stopped")
		return exitFailure
	case !rep.OK:
		for _, r := range rep.Backends {
			if r.KeyOutOfSrv == "NO" {
				fmt.Fprintf(env.stderr, "twoway-hsm demo: FAILED: the %s backend's private key was found in this process's memory\n", r.Backend)
				return exitFailure
			}
		}
		fmt.Fprintln(env.stderr, "twoway-hsm demo: FAILED (see the table); run again with -v to see the plugins' logs")
		return exitFailure
	}
	return exitOK
}

// cleanup runs the registered cleanups, last first, once each.
func (d *demo) cleanup() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
}

// runTPMBackend starts a throw-away swtpm and runs the tpm2 backend on it.
func (d *demo) runTPMBackend(ctx context.Context) *demoRow {
	sdir := filepath.Join(d.dir, "swtpm")
	in, err := startSWTPM(ctx, sdir, false)
	if err != nil {
		return &demoRow{Backend: "tpm2", Dir: sdir, KeyOutOfSrv: "not checked", PluginPIDs: []int{},
			Error: fmt.Sprintf("cannot start swtpm: %v", err)}
	}
	pid := in.Pid()
	d.cleanups = append(d.cleanups, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		in.Stop(sctx)
	})
	row := d.runBackend(ctx, "tpm2", in.Transport())
	row.SwtpmPID = pid
	return row
}

// runBackend provisions a key for the backend, serves it from a plugin
// process, runs the round trips and the memory checks.
func (d *demo) runBackend(ctx context.Context, backend, tpm string) *demoRow {
	row := &demoRow{Backend: backend, Dir: filepath.Join(d.dir, backend), KeyOutOfSrv: "not checked", PluginPIDs: []int{}}
	fail := func(format string, a ...any) *demoRow {
		row.Error = fmt.Sprintf(format, a...)
		return row
	}
	if err := os.MkdirAll(row.Dir, 0o700); err != nil {
		return fail("%v", err)
	}

	// 1. A helper process makes the key; this process learns only how to
	// reach it.
	var prov provisionResult
	if err := callDemoHelper(ctx, "provision", provisionRequest{Backend: backend, Dir: row.Dir, TPM: tpm}, &prov, nil); err != nil {
		return fail("provisioning the key: %v", err)
	}
	// The whole reference, as the plugin got it: it holds no secret (the
	// PIN is named by its file), and it works as printed.
	row.Key = prov.Ref
	var leaked kem.PrivateKey
	if backend == "soft" && d.env.getenv(demoLeakEnv) == "1" {
		// Read the key into this process, as a server without a plugin
		// would.
		k, err := softstore.Store{}.Open(ctx, prov.Ref, nil)
		if err != nil {
			return fail("%s: %v", demoLeakEnv, err)
		}
		leaked = k
	}

	// 2. A plugin process serves it.
	log := newPluginLog(d.env.stderr, d.verbose)
	client, key, err := startSelfPlugin(ctx, pluginStart{ref: prov.Ref, env: append(prov.Env, demoPluginEnv(d.env)...), processes: 1, log: log})
	if err != nil {
		return fail("starting the plugin: %v", err)
	}
	d.cleanups = append(d.cleanups, func() { client.Close() })
	row.PluginPIDs = client.PIDs()
	row.KEM = key.KEM().String()

	// 3. The round trips: requests through the OHTTP gateway over
	// loopback HTTP, this process being the gateway (the server) and the
	// client.
	gw, err := startDemoGateway(ctx, key, demoMessageSize)
	if err != nil {
		return fail("starting the gateway: %v", err)
	}
	defer gw.Close()
	var firstErr error
	for i := range d.rounds {
		if ctx.Err() != nil {
			return fail("interrupted after %d of %d round trips", row.RoundTrips, d.rounds)
		}
		chunked := i%2 == 1
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := gw.Run(rctx, chunked)
		cancel()
		if err != nil && ctx.Err() != nil {
			// Interrupted in the middle of a round trip: not a failure
			// of the backend, and not a round trip.
			return fail("interrupted after %d of %d round trips", row.RoundTrips, d.rounds)
		}
		row.RoundTrips++
		if err == nil {
			row.OK++
		} else if firstErr == nil {
			firstErr = fmt.Errorf("round trip %d (%s): %w", i+1, map[bool]string{false: "unchunked", true: "chunked"}[chunked], err)
		}
	}
	rt := gw
	row.DecapP50MS = millis(latency.Percentile(rt.Decapsulations(), 50))
	if firstErr != nil {
		row.Error = firstErr.Error()
	}

	// 4. The check: another helper searches this process for the key.
	row.ServerScan = d.scanServer(ctx, prov.Patterns)
	runtime.KeepAlive(leaked)
	switch {
	case row.ServerScan.Error != "":
		row.KeyOutOfSrv = "not checked"
	case row.ServerScan.Hits == 0:
		row.KeyOutOfSrv = "yes"
	default:
		row.KeyOutOfSrv = "NO"
	}

	// 5. The control: the plugin process, a child of this one, searched
	// from here (only after this process's own check: the scan reads the
	// plugin's memory, and with it the soft key, into a buffer here).
	row.PluginScan = scanPlugin(row.PluginPIDs, prov.Patterns)
	if err := client.Close(); err != nil && row.Error == "" {
		row.Error = fmt.Sprintf("stopping the plugin: %v", err)
	}
	return row
}

// demoLeakEnv, set to 1, makes the demo load the soft backend's key into its
// own memory, as a server without a plugin would: the memory check must
// then answer NO. It exists to test the check.
const demoLeakEnv = "TWOWAY_HSM_DEMO_TEST_LEAK"

// scanServer has a scan helper search this process for the key.
func (d *demo) scanServer(ctx context.Context, patterns string) *demoScan {
	sc := &demoScan{PID: os.Getpid()}
	var res scanResult
	err := callDemoHelper(ctx, "scan", scanRequest{PID: sc.PID, Patterns: patterns}, &res, allowScanner)
	allowScanner(0)
	if err != nil {
		sc.Error = err.Error()
		return sc
	}
	sc.Hits, sc.Regions, sc.MiB = res.Hits, res.Regions, mib(res.Bytes)
	return sc
}

// scanPlugin searches the plugin process for the key.
func scanPlugin(pids []int, patterns string) *demoScan {
	if len(pids) == 0 {
		return nil
	}
	sc := &demoScan{PID: pids[0]}
	pats, err := readPatterns(patterns)
	if err != nil {
		sc.Error = err.Error()
		return sc
	}
	res, err := memscan.ScanProcess(sc.PID, pats)
	if err != nil {
		sc.Error = err.Error()
		return sc
	}
	sc.Hits, sc.Regions, sc.MiB = res.Total(), res.Regions, mib(res.Bytes)
	return sc
}

// controlFailed reports whether the search missed the soft key in the plugin
// process, which holds it: then a "yes" means nothing.
func controlFailed(r *demoRow) bool {
	return r.Backend == "soft" && r.PluginScan != nil && r.PluginScan.Error == "" && r.PluginScan.Hits == 0
}

func mib(n int64) float64 { return float64(n*10/(1<<20)) / 10 }

// demoPluginEnv is what the demo's plugins get of its environment.
func demoPluginEnv(env *environment) []string {
	var out []string
	for _, name := range []string{"TMPDIR", "SOFTHSM2_MODULE"} {
		if v := env.getenv(name); v != "" {
			out = append(out, name+"="+v)
		}
	}
	return out
}

// printDemo prints the table and its notes.
// maxRoundTrips is the most round trips any backend of the report ran.
func maxRoundTrips(rep *demoReport) int {
	n := 0
	for _, r := range rep.Backends {
		n = max(n, r.RoundTrips)
	}
	return n
}

func printDemo(w io.Writer, rep *demoReport, rounds int) {
	fmt.Fprintf(w, "twoway-hsm demo: this process (pid %d) was the OHTTP gateway and its client; a plugin process served each key.\n\n", rep.ServerPID)
	tw := newTable(w)
	fmt.Fprintln(tw, "BACKEND\tKEM\tROUND TRIPS\tDECAP p50\tKEY OUT OF SERVER PROCESS\tKEY IN PLUGIN PROCESS (control)")
	var problems []string
	for _, r := range rep.Backends {
		trips := fmt.Sprintf("%d/%d ok", r.OK, r.RoundTrips)
		decap := "-"
		if r.DecapP50MS > 0 {
			decap = fmtDuration(time.Duration(r.DecapP50MS * 1e6))
		}
		kemName := r.KEM
		if kemName == "" {
			kemName = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Backend, kemName, trips, decap, serverCell(r), pluginCell(r))
		if r.Error != "" {
			problems = append(problems, fmt.Sprintf("%s: %s", r.Backend, r.Error))
		}
		if r.KeyOutOfSrv == "NO" {
			problems = append(problems, fmt.Sprintf("%s: the private key was found in this (the server's) process's memory", r.Backend))
		}
		if controlFailed(r) {
			problems = append(problems, fmt.Sprintf("%s: the search did not find the key in the plugin process, which holds it; the memory check cannot be trusted here", r.Backend))
		}
		if r.ServerScan != nil && r.ServerScan.Error != "" {
			problems = append(problems, fmt.Sprintf("%s: the memory check could not run: %s", r.Backend, r.ServerScan.Error))
		}
	}
	tw.Flush()

	has := map[string]bool{}
	for _, r := range rep.Backends {
		has[r.Backend] = true
	}
	ran := fmt.Sprintf("Each backend ran %d round trips", rounds)
	for _, r := range rep.Backends {
		if strings.HasPrefix(r.Error, "interrupted") {
			ran = fmt.Sprintf("The backends ran up to %d of the %d round trips asked for", maxRoundTrips(rep), rounds)
			break
		}
	}
	note := fmt.Sprintf("%s: Oblivious HTTP requests, unchunked and chunked, through the gateway "+
		"(the handler twoway-hsm gateway serves) over loopback HTTP to an origin that echoes them, "+
		"every response checked. Its key was made by a short-lived helper "+
		"process that handed this process only a masked copy; after the round trips another helper "+
		"read this process's whole memory and searched it for the key in both byte orders. "+
		"The last column searches the plugin process the same way: the soft plugin holds its key, "+
		"so finding it there shows that the search works.", ran)
	if has["pkcs11"] {
		note += " SoftHSM is software too, but keeps keys encrypted except while it uses them."
	}
	if has["tpm2"] {
		note += " A TPM keeps its key inside the TPM (here the swtpm process)."
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, wrapText(note, 80))
	if len(rep.Missing) > 0 {
		fmt.Fprintln(w, "\nNot tried here, for want of a tool; install it (as root) and run the demo again:")
		mt := newTable(w)
		for _, m := range rep.Missing {
			fmt.Fprintf(mt, "  %s\tneeds %s:\t%s\n", m.Backend, m.Missing, m.Install)
		}
		mt.Flush()
		for _, m := range rep.Missing {
			if m.Note != "" {
				fmt.Fprintf(w, "  (%s: %s)\n", m.Backend, m.Note)
			}
		}
	}
	for _, p := range problems {
		fmt.Fprintf(w, "\nFAILED %s\n", p)
	}
	if rep.Kept {
		fmt.Fprintf(w, "\nKept %s (keys, token, TPM state) for inspection; remove it when done.\n", rep.TempDir)
	}
}

// wrapText breaks text into lines of at most width columns.
func wrapText(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.Fields(text) {
		if n > 0 && n+1+len(word) > width {
			b.WriteByte('\n')
			n = 0
		} else if n > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	b.WriteByte('\n')
	return b.String()
}

func serverCell(r *demoRow) string {
	s := r.ServerScan
	switch {
	case s == nil || s.Error != "":
		return "not checked"
	case s.Hits == 0:
		return fmt.Sprintf("yes (0 hits in %.0f MiB)", s.MiB)
	default:
		return fmt.Sprintf("NO (%d hits)", s.Hits)
	}
}

func pluginCell(r *demoRow) string {
	s := r.PluginScan
	switch {
	case s == nil:
		return "-"
	case s.Error != "":
		return "not checked (" + shortErr(s.Error) + ")"
	case s.Hits > 0:
		return fmt.Sprintf("key found (%d hits)", s.Hits)
	case r.Backend == "tpm2":
		return "not found (in the TPM)"
	default:
		return "not found"
	}
}

// shortErr keeps the last part of an error chain, for a table cell.
func shortErr(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
