package plugins_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/internal/syncbuf"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// TestSoftKEMs runs requests through the plugin for keys of several KEMs:
// DHKEMs go through the ECDH call (X448 without a crypto/ecdh curve),
// X-Wing through Decapsulate.
func TestSoftKEMs(t *testing.T) {
	ids := []kem.ID{kem.DHKEMP384HKDFSHA384, kem.DHKEMP521HKDFSHA512, kem.DHKEMX25519HKDFSHA256, kem.DHKEMX448HKDFSHA512, kem.XWing}
	var refs []string
	for _, id := range ids {
		ref, _ := softKey(t, id)
		refs = append(refs, ref)
	}
	c := newClient(t, plugins.Config{Keys: refs})
	ctx := ctxT(t, 30*time.Second)
	for i, id := range ids {
		k, err := c.Key(ctx, refs[i])
		if err != nil {
			t.Fatal(err)
		}
		if k.KEM() != id {
			t.Fatalf("key %d: KEM %v, want %v", i, k.KEM(), id)
		}
		if (k.Curve() != nil) != (id.Curve() != nil) {
			t.Errorf("%v: Curve() = %v", id, k.Curve())
		}
		if err := roundTrips(ctx, k, 3000); err != nil {
			t.Errorf("%v: %v", id, err)
		}
		if !id.IsDH() {
			if _, err := k.ECDHContext(ctx, k.PublicKeyBytes()); !errors.Is(err, kem.ErrUnsupportedKEM) {
				t.Errorf("%v: ECDHContext: %v; want ErrUnsupportedKEM", id, err)
			}
		}
	}
}

// TestErrors checks that errors keep their meaning across the boundary.
func TestErrors(t *testing.T) {
	ref, _ := softKey(t, kem.DHKEMP256HKDFSHA256)
	c, err := plugins.NewClient(plugins.Config{Path: pluginBin, Keys: []string{ref}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	k, err := c.Key(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	bad := make([]byte, 65)
	bad[0] = 4
	if _, err := k.ECDHContext(ctx, bad); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Errorf("off-curve peer: %v; want ErrInvalidPublicKey", err)
	}
	if _, err := k.DecapsulateContext(ctx, []byte{1, 2, 3}); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Errorf("short enc: %v; want ErrInvalidPublicKey", err)
	}
	if _, err := c.Key(ctx, "soft:file=/nonexistent"); !errors.Is(err, plugins.ErrUnknownKey) {
		t.Errorf("unknown key: %v; want ErrUnknownKey", err)
	}
	// A call that the plugin does not answer (it is stopped) ends at the
	// caller's deadline, or when the caller cancels it, with the
	// context's error; the plugin answers again once it runs.
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	pid := c.PIDs()[0]
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := waitStopped(pid, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := k.ECDHContext(dctx, peer.PublicKey().Bytes()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v; want context.DeadlineExceeded", err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, ccancel)
	if _, err := k.ECDHContext(cctx, peer.PublicKey().Bytes()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v; want context.Canceled", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("the two calls took %v; want their deadline and cancellation (300 ms)", d)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, err := k.ECDHContext(ctx, peer.PublicKey().Bytes()); err != nil {
		t.Errorf("after the plugin runs again: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.ECDHContext(ctx, peer.PublicKey().Bytes()); !errors.Is(err, plugins.ErrClosed) {
		t.Errorf("after Close: %v; want ErrClosed", err)
	}
	// Configuration errors are reported by NewClient, with the reason the
	// plugin gave when it exited.
	for name, tc := range map[string]struct {
		cfg  plugins.Config
		want string
	}{
		"missing key file": {plugins.Config{Path: pluginBin, Keys: []string{"soft:file=/nonexistent/key.pem"}}, "/nonexistent/key.pem"},
		"unknown scheme":   {plugins.Config{Path: pluginBin, Keys: []string{"vault:foo"}}, "vault"},
		"pin-value":        {plugins.Config{Path: pluginBin, Keys: []string{"pkcs11:token=x;id=%01?pin-value=1234"}}, "pin-value"},
		"no binary":        {plugins.Config{Path: "/nonexistent/twoway-hsm", Keys: []string{ref}}, "/nonexistent/twoway-hsm"},
		"no keys":          {plugins.Config{Path: pluginBin}, "key"},
	} {
		tc.cfg.Logger = testLogger(t)
		c, err := plugins.NewClient(tc.cfg)
		if err == nil {
			c.Close()
			t.Errorf("%s: NewClient succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), "1234") {
			t.Errorf("%s: error leaks the PIN: %v", name, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not say what was wrong (%q)", name, err, tc.want)
		}
		var se *plugins.StartError
		if name == "missing key file" && (!errors.As(err, &se) || !strings.Contains(se.Reason, "/nonexistent/key.pem")) {
			t.Errorf("%s: %v is not a StartError with the plugin's reason", name, err)
		}
	}
}

// TestLogsForwarded checks that the plugin's structured records reach the
// host's slog logger with their level and attributes.
func TestLogsForwarded(t *testing.T) {
	ref, _ := softKey(t, kem.DHKEMX25519HKDFSHA256)
	var buf syncbuf.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newClient(t, plugins.Config{Keys: []string{ref}, Logger: logger})
	c.Close()
	var found bool
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, `"msg":"key opened"`) && strings.Contains(line, `"level":"INFO"`) &&
			strings.Contains(line, `"backend":"soft"`) && strings.Contains(line, `"kem":"DHKEM(X25519, HKDF-SHA256)"`) {
			found = true
		}
	}
	if !found {
		t.Fatalf("the plugin's \"key opened\" record was not forwarded:\n%s", buf.String())
	}
}

// TestStartHonoursContextDeadline: a plugin that never completes its
// handshake is given up at the deadline of NewClientContext's context, not
// only after Config.StartTimeout (30 seconds by default), and the error
// gives no reason the plugin did not give.
func TestStartHonoursContextDeadline(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hangs")
	writeFile(t, bin, []byte("#!/bin/sh\nexec sleep 60\n"))
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := plugins.NewClientContext(ctx, plugins.Config{Path: bin, Keys: []string{"soft:file=/nonexistent"}, Logger: testLogger(t)})
	if err == nil {
		c.Close()
		t.Fatal("a plugin that never answered its handshake was accepted")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("NewClientContext returned %v after it began, its context's deadline was 300ms: %v", d.Round(time.Millisecond), err)
	}
	t.Logf("NewClientContext failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	// The plugin said nothing: go-plugin's own records (that it killed
	// the process) are not the plugin's reason.
	if se := (*plugins.StartError)(nil); errors.As(err, &se) {
		t.Fatalf("a StartError with the reason %q, which the plugin did not give", se.Reason)
	}
}
