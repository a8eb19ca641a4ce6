package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// Starting a plugin process of this very binary, for selftest and demo.

// pluginLog is the slog.Handler the plugin client logs to: with -v every
// record (the client's and the plugin's, forwarded from its stderr) goes to
// the command's stderr; without it nothing is printed, but the first error
// record that carries an error is kept, so that a plugin that fails to
// start can be explained ("cannot open keys: pkcs11: PIN incorrect") in the
// command's error message. (The plugin logs why it exits before go-plugin
// notices that it did.)
type pluginLog struct {
	inner slog.Handler // nil without -v
	attrs []slog.Attr
	first *firstError
}

type firstError struct {
	mu  sync.Mutex
	msg string
}

func newPluginLog(stderr io.Writer, verbose bool) *pluginLog {
	l := &pluginLog{first: &firstError{}}
	if verbose {
		l.inner = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: plugins.LevelTrace})
	}
	return l
}

func (l *pluginLog) Enabled(ctx context.Context, level slog.Level) bool {
	if l.inner != nil {
		return l.inner.Enabled(ctx, level)
	}
	return level >= slog.LevelError
}

func (l *pluginLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var errText string
		find := func(a slog.Attr) bool {
			if a.Key == "error" {
				errText = a.Value.String()
				return false
			}
			return true
		}
		for _, a := range l.attrs {
			find(a)
		}
		r.Attrs(find)
		if errText != "" {
			l.first.mu.Lock()
			if l.first.msg == "" {
				l.first.msg = r.Message + ": " + errText
			}
			l.first.mu.Unlock()
		}
	}
	if l.inner != nil {
		return l.inner.Handle(ctx, r)
	}
	return nil
}

func (l *pluginLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(slices.Clip(l.attrs), attrs...)
	if l.inner != nil {
		c.inner = l.inner.WithAttrs(attrs)
	}
	return &c
}

func (l *pluginLog) WithGroup(name string) slog.Handler {
	c := *l
	if l.inner != nil {
		c.inner = l.inner.WithGroup(name)
	}
	return &c
}

// firstProblem returns the first error logged, or "".
func (l *pluginLog) firstProblem() string {
	l.first.mu.Lock()
	defer l.first.mu.Unlock()
	return l.first.msg
}

// pluginStart is what startSelfPlugin needs.
type pluginStart struct {
	ref       string   // the key reference given to the plugin (no secrets)
	env       []string // the plugin's entire environment
	processes int
	log       *pluginLog
}

// startSelfPlugin starts this binary as `plugin --key REF` in
// ps.processes processes, pinned by the checksum of the binary (as a server
// would pin it), and returns the client and the key it serves.
func startSelfPlugin(ctx context.Context, ps pluginStart) (*plugins.Client, *plugins.Key, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot find this program's binary to run it as the plugin: %w", err)
	}
	sum, err := plugins.FileChecksum(exe)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read this program's binary to run it as the plugin: %w", err)
	}
	client, err := plugins.NewClientContext(ctx, plugins.Config{
		Path:      exe,
		Keys:      []string{ps.ref},
		Env:       ps.env,
		Processes: ps.processes,
		Logger:    slog.New(ps.log),
		Checksum:  sum,
	})
	if err != nil {
		// go-plugin's error for a plugin that exited during its start
		// guesses at causes (architecture, libraries, permissions); the
		// plugin's own log says what happened.
		if msg := ps.log.firstProblem(); msg != "" && ctx.Err() == nil {
			return nil, nil, fmt.Errorf("the plugin exited: %s", msg)
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
