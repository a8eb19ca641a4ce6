package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twoway-hsm/twoway-hsm/internal/latency"
	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
	"github.com/twoway-hsm/twoway-hsm/keystore/secret"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

const selftestUsage = `Usage: twoway-hsm selftest --key REF [-n N] [--kdf KDF] [--aead AEAD] [--processes P] [--json]

Runs N request-response round trips through a real plugin process serving
the key, exactly as a server would: this binary is started as
'twoway-hsm plugin --key REF', a twoway receiver is built from the key it
serves (the private key stays in the plugin, the token or the TPM), and a
twoway sender plays the client. The round trips cycle through one-to-one and
one-to-many requests, unchunked and chunked; every request and response
plaintext is checked. Then it reports the round trips that failed, the
latencies (p50, p99) of a round trip and of the key's decapsulation (the
call into the plugin), and the throughput.

The PIN (PKCS#11) or auth value (TPM) goes to the plugin through its
environment, never its command line: give it with --pin-file or --pin-env,
or in the reference (pin-source=file:PATH, auth-source=env:NAME); for a
PKCS#11 key without either, it is asked for on the terminal. The plugin
gets only a few variables of this environment: SOFTHSM2_CONF,
SOFTHSM2_MODULE, YUBIHSM_PKCS11_CONF, TMPDIR, GOMAXPROCS, those the
reference names with env:NAME, and those named by --plugin-env.

Examples:
  twoway-hsm selftest --key 'soft:file=dev-key.pem'
  SOFTHSM2_CONF=/var/lib/twoway/softhsm/softhsm2.conf twoway-hsm selftest \
    --key 'pkcs11:token=gw;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so' \
    --pin-file /etc/twoway/gw.pin -n 1000 --processes 2
  twoway-hsm selftest --key 'tpm2:file=/etc/twoway/gw.tpm.pem?tpm=/dev/tpmrm0' --json

Exit status: 0 when every round trip succeeded, 1 when any failed or the
plugin could not start, 2 on a usage error.
`

// selftestPluginEnv are the variables of this process's environment that
// the plugin gets (when set).
var selftestPluginEnv = []string{"SOFTHSM2_CONF", "SOFTHSM2_MODULE", "YUBIHSM_PKCS11_CONF", "TMPDIR", "GOMAXPROCS"}

// selftestRoundTripTimeout bounds one round trip.
const selftestRoundTripTimeout = 30 * time.Second

// selftestMaxErrors is how many distinct failure messages a report keeps.
const selftestMaxErrors = 5

// latencyJSON is a latency distribution in milliseconds.
type latencyJSON struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// selftestReport is what selftest prints (--json prints it as is).
type selftestReport struct {
	Key            string         `json:"key"`
	Backend        string         `json:"backend"`
	KEM            string         `json:"kem"`
	KEMID          uint16         `json:"kem_id"`
	KDF            string         `json:"kdf"`
	AEAD           string         `json:"aead"`
	MessageSize    int            `json:"message_size"`
	Plugin         string         `json:"plugin"`
	PluginPIDs     []int          `json:"plugin_pids"`
	Processes      int            `json:"processes"`
	Concurrency    int            `json:"concurrency"`
	RoundTrips     int            `json:"round_trips"`
	OK             int            `json:"ok"`
	Failures       int            `json:"failures"`
	Shapes         map[string]int `json:"shapes"`
	RoundTripMS    latencyJSON    `json:"round_trip_ms"`
	Decapsulations int            `json:"decapsulations"`
	DecapMS        latencyJSON    `json:"decapsulation_ms"`
	ElapsedS       float64        `json:"elapsed_s"`
	PerSecond      float64        `json:"round_trips_per_s"`
	Errors         []string       `json:"errors,omitempty"`
	// Requested is -n; RoundTrips is less when the run stopped early:
	// interrupted, or at the first error from the key's backend (Stopped).
	Requested   int    `json:"requested"`
	Stopped     string `json:"stopped,omitempty"`
	Interrupted bool   `json:"interrupted,omitempty"`
}

func runSelftest(ctx context.Context, env *environment, args []string) int {
	c := newSecretCmd(env, "selftest", selftestUsage)
	c.fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	var (
		ref       = c.fs.String("key", "", "the key `reference` (soft:, pkcs11: or tpm2:), as a server gives it to the plugin")
		n         = c.fs.Int("n", 100, "the number of round trips")
		kdfFlag   = c.fs.String("kdf", "hkdf-sha256", "the HPKE KDF: hkdf-sha256, hkdf-sha384 or hkdf-sha512")
		aeadFlag  = c.fs.String("aead", "aes-128-gcm", "the HPKE AEAD: aes-128-gcm, aes-256-gcm or chacha20-poly1305")
		processes = c.fs.Int("processes", 1, "the number of plugin processes (use 2 or more with SoftHSM, which serialises work inside a process)")
		conc      = c.fs.Int("concurrency", 0, "round trips in flight at once (default: the number of processes)")
		size      = c.fs.Int("size", 4096, "the size of each request and response plaintext, in `bytes`")
		verbose   = c.fs.Bool("v", false, "print the plugin's and the plugin client's logs on stderr")
		passEnv   stringList
	)
	c.fs.Var(&passEnv, "plugin-env", "also pass this environment `variable` to the plugin (repeatable)")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return c.fail(usagef("unexpected argument %q", safeRef(pos[0])))
	case *ref == "":
		return c.fail(usagef("no --key given: name the key to test, e.g. --key 'soft:file=dev-key.pem'"))
	case *n < 1:
		return c.fail(usagef("-n must be at least 1"))
	case *processes < 1 || *processes > plugins.MaxProcesses:
		return c.fail(usagef("--processes must be between 1 and %d", plugins.MaxProcesses))
	case *conc < 0:
		return c.fail(usagef("--concurrency must not be negative"))
	case *size < 1 || *size > 16<<20:
		return c.fail(usagef("--size must be between 1 and %d bytes", 16<<20))
	}
	for _, name := range passEnv {
		if name == "" || strings.ContainsAny(name, "= ") {
			return c.fail(usagef("--plugin-env %q: want the name of an environment variable", name))
		}
	}
	kdf, err := parseKDF(*kdfFlag)
	if err != nil {
		return c.fail(usagef("--kdf: %v", err))
	}
	aead, err := parseAEAD(*aeadFlag)
	if err != nil {
		return c.fail(usagef("--aead: %v", err))
	}
	backend, err := keystore.Lookup(*ref)
	if err != nil {
		return c.fail(err)
	}
	res, err := c.resolve(*ref, backend)
	if err != nil {
		return c.fail(err)
	}
	defer res.wipe()
	c.warnDevelopment(backend)
	concurrency := *conc
	if concurrency == 0 {
		concurrency = *processes
	}

	// The reference and environment the plugin gets: a secret this
	// process holds travels in the plugin's environment, never its argv.
	pref, penv, err := c.forPlugin(res)
	if err != nil {
		return c.fail(err)
	}
	penv = append(penv, pluginEnviron(env, []string{pref}, passEnv)...)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer plugins.CleanupClients()

	display := safeRef(plugins.KeyName(*ref))
	log := newPluginLog(env.stderr, *verbose)
	client, key, err := startSelfPlugin(ctx, pluginStart{ref: pref, env: penv, processes: *processes, log: log})
	if err != nil {
		fmt.Fprintf(env.stderr, "twoway-hsm selftest: cannot start the plugin with the key %s: %v\n", display, err)
		h := backend.Troubleshoot
		if backend.SecretAttr != "" {
			h += fmt.Sprintf(" The PIN or auth value comes from --pin-file, --pin-env or the reference's %s=.", backend.SecretAttr)
		}
		fmt.Fprintf(env.stderr, "hint: %s Add -v to see the plugin's log.\n", h)
		return exitFailure
	}
	defer client.Close()

	rt, err := roundtrip.New(key, kdf, aead, *size)
	if err != nil {
		fmt.Fprintf(env.stderr, "twoway-hsm selftest: the key %s: %v\n", display, err)
		return exitFailure
	}
	rep := selftestReport{
		Key:         display,
		Backend:     key.Backend(),
		KEM:         key.KEM().String(),
		KEMID:       uint16(key.KEM()),
		KDF:         kdfName(kdf),
		AEAD:        aeadName(aead),
		MessageSize: *size,
		Plugin:      client.Plugin(),
		PluginPIDs:  client.PIDs(),
		Processes:   *processes,
		Concurrency: concurrency,
		Shapes:      map[string]int{},
		Requested:   *n,
	}
	runSelftestRounds(ctx, env, rt, *n, concurrency, &rep)

	if c.json {
		if err := writeJSON(env.stdout, rep); err != nil {
			fmt.Fprintf(env.stderr, "twoway-hsm selftest: %v\n", err)
			return exitFailure
		}
	} else {
		printSelftest(env.stdout, &rep)
	}
	if err := client.Close(); err != nil && !rep.Interrupted {
		fmt.Fprintf(env.stderr, "twoway-hsm selftest: stopping the plugin: %v\n", err)
	}
	switch {
	case rep.Interrupted:
		fmt.Fprintf(env.stderr, "twoway-hsm selftest: interrupted after %d of %d round trips\n", rep.RoundTrips, *n)
		return exitFailure
	case rep.Failures > 0:
		fmt.Fprintf(env.stderr, "twoway-hsm selftest: %d of %d round trips failed; the first error: %s\n", rep.Failures, rep.RoundTrips, rep.Errors[0])
		if rep.Stopped != "" {
			fmt.Fprintf(env.stderr, "Stopped after %d of %d round trips: %s\n", rep.RoundTrips, *n, rep.Stopped)
		}
		fmt.Fprintln(env.stderr, "Run again with -v to see the plugin's log.")
		return exitFailure
	}
	return exitOK
}

// runSelftestRounds runs n round trips, concurrency at a time, and fills in
// the report.
func runSelftestRounds(ctx context.Context, env *environment, rt *roundtrip.Tripper, n, concurrency int, rep *selftestReport) {
	var (
		next      atomic.Int64
		halt      atomic.Bool
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, n)
		wg        sync.WaitGroup
	)
	seen := map[string]bool{}
	prog := startProgress(env.stderr, "selftest", n)
	start := time.Now()
	for range min(concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil || halt.Load() {
					return
				}
				s := roundtrip.Shape(i % int(roundtrip.NumShapes))
				rctx, cancel := context.WithTimeout(ctx, selftestRoundTripTimeout)
				t0 := time.Now()
				err := rt.Run(rctx, s)
				d := time.Since(t0)
				cancel()
				mu.Lock()
				if err != nil && ctx.Err() != nil {
					// Interrupted: not a failure of the key.
					mu.Unlock()
					return
				}
				rep.RoundTrips++
				rep.Shapes[s.String()]++
				if err != nil {
					rep.Failures++
					if why := selftestStopReason(err); why != "" && rep.Stopped == "" {
						rep.Stopped = why
						halt.Store(true)
					}
					msg := err.Error()
					if !seen[msg] && len(rep.Errors) < selftestMaxErrors {
						seen[msg] = true
						rep.Errors = append(rep.Errors, fmt.Sprintf("round trip %d (%s): %s", i+1, s, msg))
					}
				} else {
					rep.OK++
					latencies = append(latencies, d)
				}
				mu.Unlock()
				prog.add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	prog.finish()
	rep.Interrupted = ctx.Err() != nil && rep.RoundTrips < n
	rep.ElapsedS = float64(elapsed.Round(time.Millisecond)) / 1e9
	if elapsed > 0 {
		rep.PerSecond = float64(int(float64(rep.OK)/elapsed.Seconds()*10+0.5)) / 10
	}
	rep.RoundTripMS = latencyJSON{millis(latency.Percentile(latencies, 50)), millis(latency.Percentile(latencies, 99))}
	decaps := rt.Decapsulations()
	rep.Decapsulations = len(decaps)
	rep.DecapMS = latencyJSON{millis(latency.Percentile(decaps, 50)), millis(latency.Percentile(decaps, 99))}
}

// selftestStopReason says why a failed round trip with a key of the backend
// ends the run, or "" to go on. An error from the key's backend (the token or TPM refused) ends it:
// repeating it shows nothing new, and repeating some (a wrong TPM auth
// value) does harm. Other failures (a plugin that crashed and is restarted,
// a plaintext that differs) are counted and the run goes on.
func selftestStopReason(err error) string {
	switch {
	case errors.Is(err, plugins.ErrAuth):
		return "the key store refused the plugin's credentials (a wrong or locked PIN or auth value; a TPM counts every wrong auth value towards its dictionary-attack lockout); check --pin-file, --pin-env, pin-source= or auth-source="
	case errors.Is(err, plugins.ErrBackend):
		return "the first error from the key's backend (the token or TPM refused the operation); repeating it would show nothing new"
	}
	return ""
}

// pluginEnviron returns the entries of this environment a plugin gets:
// selftestPluginEnv, the variables the references name as env:NAME
// sources, and those named by --plugin-env.
func pluginEnviron(env *environment, refs []string, extra []string) []string {
	names := append([]string(nil), selftestPluginEnv...)
	for _, ref := range refs {
		r, err := keyref.Parse(ref)
		if err != nil {
			continue
		}
		b, err := keystore.Lookup(ref)
		if err != nil || b.SecretAttr == "" {
			continue
		}
		if v, ok := r.Get(b.SecretAttr); ok {
			if src, err := secret.Parse(v); err == nil && src.Kind == secret.Env && src.Name != pluginSecretEnv {
				names = append(names, src.Name)
			}
		}
	}
	names = append(names, extra...)
	var out []string
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		if v := env.getenv(name); v != "" {
			out = append(out, name+"="+v)
		}
	}
	return out
}

// printSelftest prints the report for a person.
func printSelftest(w io.Writer, rep *selftestReport) {
	status := "all ok"
	if rep.Failures > 0 {
		status = fmt.Sprintf("%d FAILED", rep.Failures)
	}
	if rep.Stopped != "" {
		status += fmt.Sprintf(", stopped early (%d requested)", rep.Requested)
	}
	if rep.Interrupted {
		status += " (interrupted)"
	}
	procs := "process"
	if len(rep.PluginPIDs) != 1 {
		procs = "processes"
	}
	pids := make([]string, len(rep.PluginPIDs))
	for i, p := range rep.PluginPIDs {
		pids[i] = fmt.Sprint(p)
	}
	trips := "round trips"
	if rep.RoundTrips == 1 {
		trips = "round trip"
	}
	fmt.Fprintf(w, "twoway-hsm selftest: %d %s through a plugin process, %s\n\n", rep.RoundTrips, trips, status)
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "  %-14s %s\n", k, fmt.Sprintf(format, a...)) }
	row("key", "%s", rep.Key)
	row("backend", "%s", rep.Backend)
	row("plugin", "%s (%d %s, pid %s)", rep.Plugin, len(rep.PluginPIDs), procs, strings.Join(pids, ", "))
	row("KEM", "%s", rep.KEM)
	row("suite", "%s, %s; %d-byte requests and responses", rep.KDF, rep.AEAD, rep.MessageSize)
	var shapes []string
	for s := range roundtrip.NumShapes {
		if c := rep.Shapes[s.String()]; c > 0 {
			shapes = append(shapes, fmt.Sprintf("%d %s", c, s))
		}
	}
	row("round trips", "%d ok, %d failed (%s)", rep.OK, rep.Failures, strings.Join(shapes, ", "))
	ms := func(v float64) string { return fmtDuration(time.Duration(v * 1e6)) }
	if rep.OK > 0 {
		row("round trip", "p50 %s, p99 %s", ms(rep.RoundTripMS.P50), ms(rep.RoundTripMS.P99))
	}
	if rep.Decapsulations > 0 {
		row("decapsulation", "p50 %s, p99 %s (%d calls into the plugin)", ms(rep.DecapMS.P50), ms(rep.DecapMS.P99), rep.Decapsulations)
	}
	row("throughput", "%.1f round trips/s (%d in flight, %.2f s)", rep.PerSecond, rep.Concurrency, rep.ElapsedS)
	if len(rep.Errors) > 0 {
		fmt.Fprintln(w, "\n  failures:")
		for _, e := range rep.Errors {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
}
