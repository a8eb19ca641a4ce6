package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestPluginLog checks that the plugin client's log prints nothing without
// -v and everything with it.
func TestPluginLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newPluginLog(&buf, false)).With("plugin_slot", 0)
	log.Error("cannot open keys", "error", "pkcs11: PIN incorrect")
	if buf.Len() != 0 {
		t.Errorf("printed without -v: %q", buf.String())
	}
	slog.New(newPluginLog(&buf, true)).WithGroup("g").Debug("starting plugin", "pid", 42)
	if !strings.Contains(buf.String(), "starting plugin") {
		t.Errorf("with -v: %q", buf.String())
	}
}

func TestProgressNeedsTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := startProgress(&buf, "x", 10)
	if p != nil {
		t.Fatal("a progress bar on a buffer")
	}
	p.add(1)
	p.finish()
	if buf.Len() != 0 {
		t.Errorf("wrote %q", buf.String())
	}
}

func TestWrapText(t *testing.T) {
	got := wrapText("aaa bbb ccc dddd e", 8)
	if got != "aaa bbb\nccc dddd\ne\n" {
		t.Errorf("wrapText = %q", got)
	}
}
