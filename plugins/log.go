package plugins

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is the log/slog level that hclog's Trace maps to.
const LevelTrace = slog.LevelDebug - 4

// hclogTimeFormat is the @timestamp format go-plugin's host parses.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// NewPluginLogHandler returns the log/slog handler a plugin process logs
// through: one JSON object per line on w (the process's stderr), with
// hclog's field names (@timestamp, @level, @message), so that go-plugin on
// the host parses each record and hands it, with its level and attributes,
// to the host's logger. Records below level are dropped.
func NewPluginLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				if t, ok := a.Value.Any().(time.Time); ok {
					return slog.String("@timestamp", t.Format(hclogTimeFormat))
				}
			case slog.LevelKey:
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String("@level", levelToHCLog(l).String())
				}
			case slog.MessageKey:
				return slog.Attr{Key: "@message", Value: a.Value}
			}
			return a
		},
	})
}

// NewHCLogger returns an hclog.Logger that writes to l: the bridge between
// go-plugin, which logs through hclog, and log/slog. On the host it
// receives the plugin's records, which go-plugin has parsed from the
// plugin's stderr, and go-plugin's own; in a plugin it carries go-plugin's
// records to the plugin's handler. hclog levels map to slog levels (Trace
// to [LevelTrace]); names given with Named become a "logger" attribute.
func NewHCLogger(l *slog.Logger) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &hclogAdapter{l: l, level: new(atomic.Int32)}
}

// hclogAdapter implements hclog.Logger over a slog.Logger.
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	args  []any
	level *atomic.Int32 // an hclog.Level set by SetLevel; NoLevel (0) means the handler decides
	// noNames leaves names out of records: on the host, go-plugin names
	// a plugin's records after its executable's file name, which says
	// nothing when the plugin runs from a descriptor.
	noNames bool
	// errs, if set, catches the plugin's first error-level record with an
	// "error" attribute, whether or not l logs it.
	errs *firstError
}

func levelToHCLog(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func levelToSlog(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	if min := hclog.Level(a.level.Load()); min != hclog.NoLevel && l < min {
		return false
	}
	return (a.errs != nil && l >= hclog.Error) || a.l.Enabled(context.Background(), levelToSlog(l))
}

// Log implements hclog.Logger.
func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level == hclog.NoLevel {
		level = hclog.Info
	}
	if !a.enabled(level) {
		return
	}
	attrs := make([]slog.Attr, 0, 1+(len(a.args)+len(args))/2)
	if a.name != "" && !a.noNames {
		attrs = append(attrs, slog.String("logger", a.name))
	}
	attrs = appendKV(attrs, a.args)
	attrs = appendKV(attrs, args)
	if a.errs != nil && level >= hclog.Error && a.name == a.errs.from {
		for _, at := range attrs {
			if at.Key == "error" {
				a.errs.set(msg + ": " + at.Value.String())
				break
			}
		}
	}
	a.l.LogAttrs(context.Background(), levelToSlog(level), msg, attrs...)
}

// appendKV turns hclog's alternating keys and values into attributes.
func appendKV(attrs []slog.Attr, kv []any) []slog.Attr {
	for i := 0; i < len(kv); i += 2 {
		if i+1 == len(kv) {
			attrs = append(attrs, slog.Any("EXTRA_VALUE_AT_END", kv[i]))
			break
		}
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprint(kv[i])
		}
		switch v := kv[i+1].(type) {
		case hclog.Format:
			if len(v) > 0 {
				if f, ok := v[0].(string); ok {
					attrs = append(attrs, slog.String(key, fmt.Sprintf(f, v[1:]...)))
					continue
				}
			}
			attrs = append(attrs, slog.String(key, fmt.Sprint(v...)))
		case error:
			attrs = append(attrs, slog.String(key, v.Error()))
		default:
			attrs = append(attrs, slog.Any(key, v))
		}
	}
	return attrs
}

// Trace implements hclog.Logger.
func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (a *hclogAdapter) Info(msg string, args ...any) { a.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (a *hclogAdapter) Warn(msg string, args ...any) { a.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (a *hclogAdapter) IsInfo() bool { return a.enabled(hclog.Info) }

// IsWarn implements hclog.Logger.
func (a *hclogAdapter) IsWarn() bool { return a.enabled(hclog.Warn) }

// IsError implements hclog.Logger.
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

// ImpliedArgs implements hclog.Logger.
func (a *hclogAdapter) ImpliedArgs() []any { return append([]any(nil), a.args...) }

// With implements hclog.Logger.
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	n := *a
	n.args = append(append([]any(nil), a.args...), args...)
	return &n
}

// Name implements hclog.Logger.
func (a *hclogAdapter) Name() string { return a.name }

// Named implements hclog.Logger.
func (a *hclogAdapter) Named(name string) hclog.Logger {
	n := *a
	if n.name != "" {
		n.name += "." + name
	} else {
		n.name = name
	}
	return &n
}

// ResetNamed implements hclog.Logger.
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	n := *a
	n.name = name
	return &n
}

// SetLevel implements hclog.Logger: records below level are dropped even
// if the slog handler would take them. It affects every logger derived
// from the same NewHCLogger call.
func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }

// GetLevel implements hclog.Logger: the lowest level that is logged.
func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger implements hclog.Logger.
func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger.
func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return &stdWriter{a: a, level: level}
}

type stdWriter struct {
	a     *hclogAdapter
	level hclog.Level
}

func (w *stdWriter) Write(p []byte) (int, error) {
	w.a.Log(w.level, strings.TrimRight(string(p), "\r\n"))
	return len(p), nil
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// firstError keeps the first error-level record of a plugin that carries
// an "error" attribute: the reason a plugin gives before it exits, for the
// error of a failed start. Only the plugin's own records count, which
// go-plugin forwards from its stderr through a logger named after the
// executable's file name; go-plugin's own records (such as "plugin process
// exited") do not.
type firstError struct {
	from string // the name of the logger of the plugin's records
	once sync.Once
	msg  string
	done chan struct{} // closed once msg is set
}

func newFirstError(from string) *firstError {
	return &firstError{from: from, done: make(chan struct{})}
}

func (f *firstError) set(msg string) {
	f.once.Do(func() { f.msg = msg; close(f.done) })
}

// wait returns the first error message, waiting up to d for one.
func (f *firstError) wait(d time.Duration) string {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.done:
		return f.msg
	case <-t.C:
		return ""
	}
}
