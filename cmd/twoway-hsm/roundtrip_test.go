package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// TestRoundTripperShapes runs every shape of round trip with software keys
// of each KEM the sender side supports, in this process.
func TestRoundTripperShapes(t *testing.T) {
	ctx := context.Background()
	for _, id := range []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMP384HKDFSHA384, kem.DHKEMP521HKDFSHA512, kem.DHKEMX25519HKDFSHA256, kem.DHKEMX448HKDFSHA512, kem.MLKEM768, kem.XWing} {
		key, err := kem.GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := newRoundTripper(key, hpke.KDF_HKDF_SHA384, hpke.AEAD_AES256GCM, 3*chunkLen+17)
		if !hpke.KEM(id).IsValid() {
			if err == nil {
				t.Errorf("%v: no error for a KEM without an HPKE sender", id)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		for s := range numShapes {
			if err := rt.run(ctx, s); err != nil {
				t.Errorf("%v %s: %v", id, s, err)
			}
		}
		// One decapsulation per one-to-one round trip, one per receiver of
		// a one-to-many one.
		if got, want := len(rt.key.durations()), 2+2*multiReceivers; got != want {
			t.Errorf("%v: %d decapsulations timed; want %d", id, got, want)
		}
	}
}

// wrongKey has the public key of one key and decapsulates with another.
type wrongKey struct {
	kem.PrivateKey
	other kem.PrivateKey
}

func (k wrongKey) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	return k.other.DecapsulateContext(ctx, enc)
}

func TestRoundTripperFails(t *testing.T) {
	a, _ := kem.GenerateKey(kem.DHKEMP256HKDFSHA256)
	b, _ := kem.GenerateKey(kem.DHKEMP256HKDFSHA256)
	rt, err := newRoundTripper(wrongKey{a, b}, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, 100)
	if err != nil {
		t.Fatal(err)
	}
	for s := range numShapes {
		err := rt.run(context.Background(), s)
		if err == nil || !strings.Contains(err.Error(), "server") {
			t.Errorf("%s with the wrong key: %v", s, err)
		}
	}
	if n := len(rt.key.durations()); n != 4 {
		// Decapsulation itself succeeds; opening fails afterwards. The
		// one-to-many round trips stop at their first receiver.
		t.Errorf("%d decapsulations timed", n)
	}
}

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
