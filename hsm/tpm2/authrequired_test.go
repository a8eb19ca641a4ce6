package tpm2

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	gotpm "github.com/google/go-tpm/tpm2"
)

// lockoutCounter reads TPM_PT_LOCKOUT_COUNTER: the authorization failures
// the TPM's dictionary-attack protection has counted.
func lockoutCounter(t testing.TB, tp *TPM) uint32 {
	t.Helper()
	var n uint32
	err := tp.c.do(testCtx(t), func() error {
		rsp, err := tp.c.getCap(gotpm.TPMCapTPMProperties, uint32(gotpm.TPMPTLockoutCounter), 1)
		if err != nil {
			return err
		}
		props, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			return err
		}
		if len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != gotpm.TPMPTLockoutCounter {
			return errors.New("no TPM_PT_LOCKOUT_COUNTER")
		}
		n = props.TPMProperty[0].Value
		return nil
	})
	if err != nil {
		t.Fatalf("lockout counter: %v", err)
	}
	return n
}

// TestNoAuthForKeyThatNeedsOne (issue 11, bug 3): a key whose file
// records an auth value, opened without a source for one, is refused
// before the TPM is touched: no ECDH attempt, no dictionary-attack
// count. Before the fix the key loaded and every ECDH cost an attempt.
func TestNoAuthForKeyThatNeedsOne(t *testing.T) {
	sw, tp := startTPM(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	withAuth := filepath.Join(dir, "auth.pem")
	k := createKey(t, tp, ecdh.P256(), WithAuth([]byte("s3cret")))
	if !k.NeedsAuth() || len(k.auth) == 0 {
		t.Fatalf("created with auth: NeedsAuth %v, auth value of %d bytes", k.NeedsAuth(), len(k.auth))
	}
	if err := k.WriteKeyFile(withAuth); err != nil {
		t.Fatal(err)
	}
	noAuth := filepath.Join(dir, "noauth.pem")
	if err := createKey(t, tp, ecdh.P256()).WriteKeyFile(noAuth); err != nil {
		t.Fatal(err)
	}
	before := lockoutCounter(t, tp)

	// Loaded without auth (to show it): ECDH refuses without trying.
	loaded, err := tp.LoadKeyFile(ctx, withAuth)
	if err != nil {
		t.Fatal(err)
	}
	closeKey(t, loaded)
	if !loaded.NeedsAuth() || len(loaded.auth) != 0 {
		t.Fatalf("loaded without auth: NeedsAuth %v, auth value of %d bytes", loaded.NeedsAuth(), len(loaded.auth))
	}
	for range 3 {
		_, err := loaded.ECDHContext(ctx, softwarePeer(t, ecdh.P256()).PublicKey().Bytes())
		if !errors.Is(err, ErrAuthRequired) || errors.Is(err, ErrAuthFail) {
			t.Fatalf("ECDH without auth: %v, want ErrAuthRequired", err)
		}
	}
	if after := lockoutCounter(t, tp); after != before {
		t.Fatalf("lockout counter %d -> %d: the TPM was asked", before, after)
	}

	// The prompt is asked only for the key that records an auth value.
	asked := 0
	prompt := WithAuthPrompt(func() ([]byte, error) { asked++; return []byte("s3cret"), nil })
	k2, err := tp.LoadKeyFile(ctx, noAuth, prompt)
	if err != nil || asked != 0 || k2.NeedsAuth() {
		t.Fatalf("key without auth: %v, prompt asked %d times, NeedsAuth %v", err, asked, k2 != nil && k2.NeedsAuth())
	}
	closeKey(t, k2)
	k3, err := tp.LoadKeyFile(ctx, withAuth, prompt)
	if err != nil || asked != 1 {
		t.Fatalf("key with auth: %v, prompt asked %d times", err, asked)
	}
	closeKey(t, k3)
	checkECDH(t, ctx, k3)

	// The counter does count what reaches the TPM: a wrong auth value.
	wrong, err := tp.LoadKeyFile(ctx, withAuth, WithAuth([]byte("wrong")))
	if err != nil {
		t.Fatal(err)
	}
	closeKey(t, wrong)
	if _, err := wrong.ECDHContext(ctx, softwarePeer(t, ecdh.P256()).PublicKey().Bytes()); !errors.Is(err, ErrAuthFail) {
		t.Fatalf("wrong auth: %v", err)
	}
	if after := lockoutCounter(t, tp); after != before+1 {
		t.Fatalf("lockout counter %d -> %d after a wrong auth value, want one more", before, after)
	}
	wrong.Close()

	// OpenKey refuses it before it connects: here, to no TPM at all.
	tp.Close()
	k.Close()
	loaded.Close()
	k2.Close()
	k3.Close()
	sw.Stop()
	_, err = OpenKey(ctx, (&KeyRef{File: withAuth, TPM: sw.Transport()}).String())
	if !errors.Is(err, ErrAuthRequired) || errors.Is(err, ErrTPMUnavailable) {
		t.Fatalf("OpenKey without auth-source: %v, want ErrAuthRequired before connecting", err)
	}
	if !strings.Contains(err.Error(), "auth-source=file:PATH") || !strings.Contains(err.Error(), "env:NAME") {
		t.Errorf("the error does not say which source to add: %v", err)
	}
	t.Logf("refused: %v", err)
	// A key without auth value gets as far as the (absent) TPM.
	if _, err := OpenKey(ctx, (&KeyRef{File: noAuth, TPM: sw.Transport()}).String()); !errors.Is(err, ErrTPMUnavailable) {
		t.Fatalf("OpenKey(no auth needed, no TPM): %v", err)
	}
	sw.Start()
}

// TestHandleLogsAsHex (issue 11): a handle in a log record is 0x%08x,
// also in JSON (it was a number, relayed by go-plugin as
// 2.147483648e+09).
func TestHandleLogsAsHex(t *testing.T) {
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "handle", Handle(0x80000000))
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["handle"] != "0x80000000" {
		t.Fatalf("logged %s", b.Bytes())
	}
	b.Reset()
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "handle", SRKHandle)
	if !strings.Contains(b.String(), "handle=0x81000001") {
		t.Fatalf("logged %s", b.Bytes())
	}
}
