package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// Starting a plugin process of this very binary, for selftest and demo.

// newPluginLog returns the handler the plugin client logs to: with -v
// every record (the client's and the plugin's, forwarded from its stderr)
// goes to the command's stderr; without it nothing is printed. Why a plugin
// failed to start reaches the command through plugins.StartError.
func newPluginLog(stderr io.Writer, verbose bool) slog.Handler {
	if verbose {
		return slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: plugins.LevelTrace})
	}
	return slog.DiscardHandler
}

// pluginStart is what startSelfPlugin needs.
type pluginStart struct {
	ref       string   // the key reference given to the plugin (no secrets)
	env       []string // the plugin's entire environment
	processes int
	log       slog.Handler
}

// selfBinary returns the path of this program's binary and its SHA-256,
// computed once per process (the demo starts a plugin per backend, and the
// client hashes the binary again at each start to check it).
var selfBinary = sync.OnceValues(func() (selfBin, error) {
	exe, err := os.Executable()
	if err != nil {
		return selfBin{}, fmt.Errorf("cannot find this program's binary to run it as the plugin: %w", err)
	}
	sum, err := plugins.FileChecksum(exe)
	if err != nil {
		return selfBin{}, fmt.Errorf("cannot read this program's binary to run it as the plugin: %w", err)
	}
	return selfBin{path: exe, sum: sum}, nil
})

type selfBin struct {
	path string
	sum  []byte
}

// startSelfPlugin starts this binary as `plugin --key REF` in
// ps.processes processes, pinned by the checksum the binary had when this
// process first started a plugin (as a server would pin it), and returns the
// client and the key it serves.
func startSelfPlugin(ctx context.Context, ps pluginStart) (*plugins.Client, *plugins.Key, error) {
	bin, err := selfBinary()
	if err != nil {
		return nil, nil, err
	}
	client, err := plugins.NewClientContext(ctx, plugins.Config{
		Path:      bin.path,
		Keys:      []string{ps.ref},
		Env:       ps.env,
		Processes: ps.processes,
		Logger:    slog.New(ps.log),
		Checksum:  bin.sum,
	})
	if err != nil {
		// go-plugin's error for a plugin that exited during its start
		// guesses at causes (architecture, libraries, permissions); the
		// plugin's own log says what happened.
		var se *plugins.StartError
		if errors.As(err, &se) && ctx.Err() == nil {
			return nil, nil, fmt.Errorf("the plugin exited: %s", se.Reason)
		}
		return nil, nil, err
	}
	key, err := client.Key(ctx, plugins.KeyName(ps.ref))
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, key, nil
}
