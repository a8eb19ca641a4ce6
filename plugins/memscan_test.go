package plugins_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/internal/memscan"
)

// TestKeyStaysOutOfServerMemory imports a key with known bytes into each
// backend, runs requests through the plugin in a separate server process,
// and scans that process's whole memory (internal/memscan, which holds the
// key only masked) for the private key in either byte order: nothing may
// be found. The positive control scans the soft backend's plugin process,
// which holds the key, and must find it. (The scanner itself is tested in
// internal/memscan.)
func TestKeyStaysOutOfServerMemory(t *testing.T) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	scalar := priv.Bytes()
	pats := memscan.Mask(scalar)
	clear(scalar)
	for _, backend := range []string{"pkcs11", "tpm2", "soft"} {
		t.Run(backend, func(t *testing.T) {
			bk := provision(t, backend, priv)
			h := startHelperServer(t, helperConfig{Refs: bk.refs, Env: bk.env, Rounds: 120})
			res, err := memscan.ScanProcess(h.pid(), pats)
			if err != nil {
				t.Fatalf("scan server: %v", err)
			}
			t.Logf("server pid %d: scanned %d regions, %d MiB: %v", h.pid(), res.Regions, res.Bytes>>20, res.Hits)
			if res.Bytes < 1<<20 {
				t.Fatalf("scanned only %d bytes of the server", res.Bytes)
			}
			if res.Total() != 0 {
				t.Fatalf("the server process holds the private key: %v", res.Hits)
			}
			pres, err := memscan.ScanProcess(h.plugins[0], pats)
			if err != nil {
				t.Fatalf("scan plugin: %v", err)
			}
			t.Logf("plugin pid %d (%s): scanned %d regions, %d MiB: %v", h.plugins[0], backend, pres.Regions, pres.Bytes>>20, pres.Hits)
			if backend == "soft" && pres.Total() == 0 {
				t.Fatal("positive control failed: the soft plugin holds the key, but the scan did not find it")
			}
			h.stop()
		})
	}
}
