package plugins_test

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// markerScript writes an executable that, if it ever runs, creates marker.
func markerScript(t *testing.T, path, marker string) {
	t.Helper()
	writeFile(t, path, []byte("#!/bin/sh\ntouch '"+marker+"'\nexit 1\n"))
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// TestChecksum pins the plugin binary by SHA-256: the genuine binary with
// its checksum runs; a tampered binary, a wrong checksum, or a binary
// replaced after the client started is refused before it runs (the
// tampered program would create a marker file).
func TestChecksum(t *testing.T) {
	ref, _ := softKey(t, kem.DHKEMX25519HKDFSHA256)
	good, err := plugins.FileChecksum(pluginBin)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "tampered-binary-ran")
	tampered := filepath.Join(dir, "twoway-hsm")
	markerScript(t, tampered, marker)
	wrong := sha256.Sum256([]byte("not the plugin"))

	t.Run("genuine", func(t *testing.T) {
		c := newClient(t, plugins.Config{Keys: []string{ref}, Checksum: good})
		k, err := c.Key(ctxT(t, 10*time.Second), ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := roundTrips(ctxT(t, 10*time.Second), k, 10); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct {
		name     string
		checksum []byte
	}{
		{"tampered binary", good},
		{"wrong checksum", wrong[:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plugins.NewClient(plugins.Config{Path: tampered, Keys: []string{ref}, Checksum: tc.checksum, Logger: testLogger(t)})
			if !errors.Is(err, plugins.ErrChecksum) {
				t.Fatalf("NewClient: %v; want ErrChecksum", err)
			}
			if exists(marker) {
				t.Fatal("the refused binary ran")
			}
		})
	}
	t.Run("control: unpinned, it runs", func(t *testing.T) {
		_, err := plugins.NewClient(plugins.Config{Path: tampered, Keys: []string{ref}, Logger: testLogger(t)})
		if err == nil {
			t.Fatal("NewClient with a script that is no plugin succeeded")
		}
		if !exists(marker) {
			t.Fatal("the marker script did not run even without a checksum: the test proves nothing")
		}
		os.Remove(marker)
	})
	t.Run("replaced after start", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "twoway-hsm")
		b, err := os.ReadFile(pluginBin)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, bin, b)
		os.Chmod(bin, 0o755)
		c := newClient(t, plugins.Config{Path: bin, Keys: []string{ref}, Checksum: good})
		k, err := c.Key(ctxT(t, 10*time.Second), ref)
		if err != nil {
			t.Fatal(err)
		}
		// Replace the binary, then make the client restart the plugin.
		markerScript(t, bin+".new", marker)
		if err := os.Rename(bin+".new", bin); err != nil {
			t.Fatal(err)
		}
		pid := c.PIDs()[0]
		if err := killAndWait(pid); err != nil {
			t.Fatal(err)
		}
		err = roundTrips(ctxT(t, 10*time.Second), k, 10)
		if !errors.Is(err, plugins.ErrChecksum) || !errors.Is(err, plugins.ErrUnavailable) {
			t.Fatalf("request after the binary was replaced: %v; want ErrUnavailable and ErrChecksum", err)
		}
		if exists(marker) {
			t.Fatal("the replaced binary ran")
		}
	})
}
