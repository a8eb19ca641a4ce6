package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/plugins/keyset"
)

const pluginUsage = `Usage: twoway-hsm plugin --key REF [--key REF ...]

Serves the keys named by the references to the server that started this
process, over the twoway-hsm plugin protocol (hashicorp/go-plugin with a
data channel inherited at exec, protocol version %d). A server loads it with the Go package
github.com/twoway-hsm/twoway-hsm/plugins; it is not meant to be run by hand.

References (their scheme picks the backend):
  soft:file=/path/key.pem              a software key file (development only:
                                       the key is in this process's memory)
  pkcs11:token=gw;id=%%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:GW_PIN
                                       a key on a PKCS#11 token (RFC 7512 URI)
  tpm2:file=/path/key.tpm.pem?tpm=/dev/tpmrm0&auth-source=env:GW_AUTH
                                       a key in a TPM 2.0

References are command-line arguments and so carry no secrets: PINs and auth
values come from the environment the server gives the plugin
(pin-source=env:NAME, auth-source=env:NAME) or from a file. A pkcs11
pin-value is refused.

Only the go-plugin handshake is written to stdout; logs go to stderr as JSON
records, which the server forwards to its own log. The plugin runs with
GOMAXPROCS=1 unless its environment sets GOMAXPROCS: servers scale with more
plugin processes instead.
`

func runPlugin(ctx context.Context, env *environment, args []string) int {
	fs := flag.NewFlagSet("plugin", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() { fmt.Fprintf(fs.Output(), pluginUsage, plugins.ProtocolVersion) }
	var keys stringList
	fs.Var(&keys, "key", "a key reference to serve (repeatable)")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "twoway-hsm plugin: unexpected argument %q\n", safeRef(fs.Arg(0)))
		return exitUsage
	}
	if len(keys) == 0 {
		fmt.Fprintln(env.stderr, "twoway-hsm plugin: no --key given")
		fs.Usage()
		return exitUsage
	}
	if slices.Contains(keys, "") {
		fmt.Fprintln(env.stderr, "twoway-hsm plugin: empty key reference")
		return exitUsage
	}
	if !plugins.StartedByHost() {
		fmt.Fprintf(env.stderr, "twoway-hsm plugin: this command is a plugin that a server starts (with the Go package\n"+
			"github.com/twoway-hsm/twoway-hsm/plugins) to use the keys it names; it is not run by hand.\n"+
			"Run 'twoway-hsm plugin -h' for details.\n")
		return exitFailure
	}

	// One P by default: the backends serialise their work (SoftHSM inside
	// a process, a TPM on its connection), and with a single P the gRPC
	// goroutines of a call hand over on one thread instead of waking
	// others (plugins' BenchmarkRoundTripCost: the bare plugin's threads
	// ran 6.5 times per call on two Ps, 3.8 on one, in different runs).
	// Scale with more processes
	// (plugins.Config.Processes), or set GOMAXPROCS in the plugin's
	// environment.
	if env.getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	level := slog.LevelInfo
	if strings.EqualFold(env.getenv(plugins.LogLevelEnv), "debug") {
		level = slog.LevelDebug
	}
	// os.Stderr is captured now: plugins.Serve later points the os.Stderr
	// variable at a pipe of its own, but the host reads records from the
	// original descriptor.
	logger := slog.New(plugins.NewPluginLogHandler(os.Stderr, level))

	set, err := keyset.Open(ctx, keys,
		keyset.WithLogger(logger),
		keyset.WithPluginName("twoway-hsm "+Version()))
	if err != nil {
		logger.Error("cannot open keys", "error", err.Error())
		return exitFailure
	}
	defer set.Close()
	logger.Debug("serving keys", "keys", len(keys), "protocol", plugins.ProtocolVersion)
	plugins.Serve(set, logger)
	if err := set.Close(); err != nil {
		logger.Error("closing keys", "error", err.Error())
		return exitFailure
	}
	return exitOK
}

// flagExit is the exit status for an error from flag.FlagSet.Parse: 0
// after -h, 2 otherwise (the flag package has printed what was wrong).
func flagExit(err error) int {
	if err == flag.ErrHelp {
		return exitOK
	}
	return exitUsage
}
