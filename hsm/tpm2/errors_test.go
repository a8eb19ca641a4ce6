package tpm2

import (
	"context"
	"crypto/ecdh"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gotpm "github.com/google/go-tpm/tpm2"

	"github.com/twoway-hsm/twoway-hsm/testenv"
)

func TestWrongAuth(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	secret := "correct-horse-battery"
	k, err := tp.CreateKey(ctx, ecdh.P256(), WithAuth([]byte(secret)))
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := k.KeyFile()
	k.Close()

	bad, err := tp.LoadKey(ctx, pemBytes, WithAuth([]byte("Zq7-not-it")))
	if err != nil {
		t.Fatal(err) // loading needs only the parent's auth
	}
	defer bad.Close()
	_, err = bad.ECDHContext(ctx, softwarePeer(t, ecdh.P256()).PublicKey().Bytes())
	if !errors.Is(err, ErrAuthFail) {
		t.Fatalf("err = %v, want ErrAuthFail", err)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "Zq7-not-it") {
		t.Fatalf("error message leaks an auth value: %v", err)
	}
	t.Logf("wrong auth: %v", err)

	// No auth at all for a key that has one: refused before the TPM is
	// asked (see TestNoAuthForKeyThatNeedsOne).
	noauth, err := tp.LoadKey(ctx, pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer noauth.Close()
	if _, err := noauth.ECDHContext(ctx, softwarePeer(t, ecdh.P256()).PublicKey().Bytes()); !errors.Is(err, ErrAuthRequired) {
		t.Fatalf("no auth: err = %v, want ErrAuthRequired", err)
	}

	good, err := tp.LoadKey(ctx, pemBytes, WithAuth([]byte(secret)))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	checkECDH(t, ctx, good)

	// Auth values that cannot be used. (The SRK and two keys fill swtpm's
	// three object slots now, so this also checks that TPM2_Create finds
	// one.)
	if k, err := tp.CreateKey(ctx, ecdh.P256(), WithAuth(make([]byte, 33))); err != nil {
		t.Fatalf("33 zero bytes trim to no auth: %v", err)
	} else {
		checkECDH(t, ctx, k)
		k.Close()
	}
	if _, err := tp.CreateKey(ctx, ecdh.P256(), WithAuth([]byte(strings.Repeat("x", 33)))); !errors.Is(err, ErrInvalidAuth) {
		t.Fatalf("33-byte auth: err = %v, want ErrInvalidAuth", err)
	}
	if _, err := tp.CreateKey(ctx, ecdh.P256(), WithAuthEnv("TWOWAY_TEST_UNSET_VARIABLE")); !errors.Is(err, ErrInvalidAuth) {
		t.Fatalf("unset env: err = %v, want ErrInvalidAuth", err)
	}
	if _, err := tp.CreateKey(ctx, ecdh.P256(), WithAuthFile(filepath.Join(t.TempDir(), "nope"))); !errors.Is(err, ErrInvalidAuth) {
		t.Fatalf("missing auth file: err = %v, want ErrInvalidAuth", err)
	}
}

func TestAuthSources(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	tp := openTPM(t, sw)
	k, err := tp.CreateKey(ctx, ecdh.P256(), WithAuth([]byte("s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "k.pem")
	if err := k.WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	k.Close()
	authFile := filepath.Join(dir, "auth")
	writeFile(t, authFile, "s3cret\r\n")
	t.Setenv("TWOWAY_TEST_TPM_AUTH", "s3cret")

	for name, ref := range map[string]string{
		"file":      (&KeyRef{File: path, TPM: sw.Transport(), AuthSource: authFile}).String(),
		"file:":     (&KeyRef{File: path, TPM: sw.Transport(), AuthSource: "file:" + authFile}).String(),
		"env":       (&KeyRef{File: path, TPM: sw.Transport(), AuthSource: "env:TWOWAY_TEST_TPM_AUTH"}).String(),
		"tcp:// in": "tpm2:file=" + path + "?tpm=tcp://" + strings.TrimPrefix(sw.Transport(), "tcp:"),
	} {
		var opts []Option
		if name == "tcp:// in" {
			opts = append(opts, WithAuth([]byte("s3cret"))) // code overrides the reference
		}
		k, err := OpenKey(ctx, ref, opts...)
		if err != nil {
			t.Fatalf("%s: OpenKey(%s): %v", name, ref, err)
		}
		checkECDH(t, ctx, k)
		k.Close()
	}
}

func TestMissingAndInvalidKeyFiles(t *testing.T) {
	sw, tp := startTPM(t)
	ctx := testCtx(t)
	dir := t.TempDir()

	missing := filepath.Join(dir, "missing.pem")
	_, err := tp.LoadKeyFile(ctx, missing)
	if !errors.Is(err, ErrKeyFileNotFound) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file: %v", err)
	}
	_, err = OpenKey(ctx, "tpm2:file="+missing+"?tpm="+sw.Transport())
	if !errors.Is(err, ErrKeyFileNotFound) {
		t.Fatalf("OpenKey(missing file): %v", err)
	}
	t.Logf("missing: %v", err)

	for name, content := range map[string]string{
		"empty":     "",
		"not pem":   "hello",
		"other pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"bad der":   "-----BEGIN TSS2 PRIVATE KEY-----\nMAMCAQA=\n-----END TSS2 PRIVATE KEY-----\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		writeFile(t, p, content)
		if _, err := tp.LoadKeyFile(ctx, p); !errors.Is(err, ErrInvalidKeyFile) {
			t.Errorf("%s: err = %v, want ErrInvalidKeyFile", name, err)
		}
	}
}

func TestKeyFileForAnotherTPM(t *testing.T) {
	swA := testenv.StartSWTPM(t)
	swB := testenv.StartSWTPM(t)
	ctx := testCtx(t)
	tpA := openTPM(t, swA)
	k, err := tpA.CreateKey(ctx, ecdh.P256())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "a.pem")
	if err := k.WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	k.Close()

	tpB := openTPM(t, swB)
	_, err = tpB.LoadKeyFile(ctx, path)
	if !errors.Is(err, ErrWrongTPM) {
		t.Fatalf("err = %v, want ErrWrongTPM", err)
	}
	t.Logf("wrong TPM: %v", err)
	_, err = OpenKey(ctx, "tpm2:file="+path+"?tpm="+swB.Transport())
	if !errors.Is(err, ErrWrongTPM) {
		t.Fatalf("OpenKey: err = %v, want ErrWrongTPM", err)
	}
	tpB.Close()
	assertNoLeaks(t, swB.Transport())
}

func TestPersistentHandles(t *testing.T) {
	sw, tp := startTPM(t)
	ctx := testCtx(t)
	const h Handle = 0x81000010

	k := createKey(t, tp, ecdh.P384(), WithAuth([]byte("p")))
	if err := k.Persist(ctx, h); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if got, ok := k.Handle(); !ok || got != h {
		t.Fatalf("Handle() = %v, %v", got, ok)
	}
	checkECDH(t, ctx, k) // now through the persistent handle

	hs, err := tp.PersistentHandles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0] != h {
		t.Fatalf("PersistentHandles = %v, want [%v]", hs, h)
	}

	k2 := createKey(t, tp, ecdh.P256())
	if err := k2.Persist(ctx, h); !errors.Is(err, ErrHandleInUse) {
		t.Fatalf("Persist on a taken handle: %v", err)
	}

	// Open by handle, directly and through a reference, after a restart.
	byHandle, err := tp.OpenHandle(ctx, h, WithAuth([]byte("p")))
	if err != nil {
		t.Fatal(err)
	}
	if !byHandle.PublicKey().Equal(k.PublicKey()) {
		t.Fatal("OpenHandle: another key")
	}
	checkECDH(t, ctx, byHandle)
	if _, err := byHandle.KeyFile(); err == nil {
		t.Fatal("KeyFile of a handle-only key succeeded")
	}
	byHandle.Close()
	sw.Restart()
	ref := "tpm2:handle=0x81000010?tpm=" + sw.Transport()
	byRef, err := OpenKey(ctx, ref, WithAuth([]byte("p")))
	if err != nil {
		t.Fatalf("OpenKey(%s): %v", ref, err)
	}
	checkECDH(t, ctx, byRef)

	if err := tp.EvictHandle(ctx, h); err != nil {
		t.Fatalf("EvictHandle: %v", err)
	}
	if _, err := byRef.ECDHContext(ctx, softwarePeer(t, ecdh.P384()).PublicKey().Bytes()); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("ECDH on evicted handle: %v", err)
	}
	byRef.Close()
	if _, err := tp.OpenHandle(ctx, h); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("OpenHandle(evicted): %v", err)
	}
	if err := tp.EvictHandle(ctx, h); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("EvictHandle(evicted): %v", err)
	}
	if hs, _ := tp.PersistentHandles(ctx); len(hs) != 0 {
		t.Fatalf("PersistentHandles after evict = %v", hs)
	}
}

// TestPersistentSRK: with a storage key at 0x81000001, new keys go under it
// and their files name it as parent; once it is evicted, new keys go under
// the transient SRK.
func TestPersistentSRK(t *testing.T) {
	ctx := testCtx(t)
	sw, tp := startTPM(t, WithTransientSRK())
	// Persist the standard SRK at 0x81000001, as tpm2_createprimary +
	// tpm2_evictcontrol or systemd would.
	c := tp.c
	err := c.do(ctx, func() error {
		p, err := c.parentFor(ownerHierarchy)
		if err != nil {
			return err
		}
		return evictControl(c, p.handle, p.name, SRKHandle)
	})
	if err != nil {
		t.Fatal(err)
	}
	tp.Close()

	tp2 := openTPM(t, sw)
	k, err := tp2.CreateKey(ctx, ecdh.P256())
	if err != nil {
		t.Fatal(err)
	}
	if k.blob.Parent != 0x81000001 {
		t.Fatalf("key file parent = %#x, want 0x81000001", k.blob.Parent)
	}
	pemBytes, _ := k.KeyFile()
	k.Close()
	tp2.Close()
	sw.Restart()

	tp3 := openTPM(t, sw)
	k, err = tp3.LoadKey(ctx, pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	closeKey(t, k)
	checkECDH(t, ctx, k)

	if err := tp3.EvictHandle(ctx, SRKHandle); err != nil {
		t.Fatal(err)
	}
	k = createKey(t, tp3, ecdh.P256())
	if Handle(k.blob.Parent) != ownerHierarchy {
		t.Fatalf("after evicting the SRK: key file parent = %#x, want %v", k.blob.Parent, ownerHierarchy)
	}
	checkECDH(t, ctx, k)
}

// TestManyKeys: more keys in use than the TPM has object slots (swtpm has
// three, one of them for the SRK); least recently used keys are flushed
// and reloaded.
func TestManyKeys(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	var keys []*Key
	for i := range 6 {
		curve := ecdh.P256()
		if i%2 == 1 {
			curve = ecdh.P384()
		}
		k := createKey(t, tp, curve)
		keys = append(keys, k)
	}
	for range 3 {
		for _, k := range keys {
			checkECDH(t, ctx, k)
			if n := tp.c.transientObjects(); n > maxTransientObjects {
				t.Fatalf("%d transient objects loaded", n)
			}
		}
	}
}

// TestStaleHandlesFlushed: a client that died left objects and sessions in
// swtpm (it has no resource manager); Open flushes them.
func TestStaleHandlesFlushed(t *testing.T) {
	ctx := testCtx(t)
	sw, tp := startTPM(t)
	k, err := tp.CreateKey(ctx, ecdh.P256())
	if err != nil {
		t.Fatal(err)
	}
	checkECDH(t, ctx, k)
	// Simulate a crash: drop the connection without flushing anything.
	c := tp.c
	c.lock(ctx)
	c.tr.Close()
	c.tr = nil
	c.sess = nil
	clear(c.parents)
	clear(c.loaded)
	c.unlock()
	// Leave the registry entry too, as if the process died.
	tr, ss := tpmHandles(t, sw.Transport())
	if len(tr) == 0 || len(ss) == 0 {
		t.Fatalf("expected leftovers, got transient %v sessions %v", tr, ss)
	}
	t.Logf("left behind: transient %v, sessions %v", tr, ss)

	rec := &logRecorder{}
	c.log = slog.New(rec)
	checkECDH(t, ctx, k) // reconnects, flushing the leftovers
	if rec.count("flushed stale handles") != 1 {
		t.Fatal("stale handles were not flushed")
	}
	k.Close()
	tp.Close()
	assertNoLeaks(t, sw.Transport())
}

// TestContextHonoured: a done context fails fast, and a context that ends
// while waiting for the TPM lock stops the wait.
func TestContextHonoured(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	k := createKey(t, tp, ecdh.P256())
	peer := softwarePeer(t, ecdh.P256()).PublicKey().Bytes()

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.ECDHContext(cancelled, peer); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}

	// Hold the connection lock, as a long command would.
	if err := tp.c.lock(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	start := time.Now()
	_, err := k.ECDHContext(short, peer)
	tp.c.unlock()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for the lock: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("waited %v for a 50ms context", d)
	}
	checkECDH(t, ctx, k)
}

func TestClosed(t *testing.T) {
	sw, tp := startTPM(t)
	ctx := testCtx(t)
	k, err := tp.CreateKey(ctx, ecdh.P256())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := k.ECDHContext(ctx, softwarePeer(t, ecdh.P256()).PublicKey().Bytes()); !errors.Is(err, ErrClosed) {
		t.Fatalf("ECDH after Close: %v", err)
	}
	tp.Close()
	if _, err := tp.CreateKey(ctx, ecdh.P256()); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreateKey after Close: %v", err)
	}
	assertNoLeaks(t, sw.Transport())
}

// TestRetryWarnings: TPM_RC_RETRY, _YIELDED and _TESTING are retried a
// bounded number of times.
func TestRetryWarnings(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	calls := 0
	err := tp.c.do(ctx, func() error {
		calls++
		if calls <= 3 {
			return []error{gotpm.TPMRCRetry, gotpm.TPMRCYielded, gotpm.TPMRCTesting}[calls-1]
		}
		_, err := tp.c.getCap(gotpm.TPMCapHandles, 0x80000000, 1)
		return err
	})
	if err != nil || calls != 4 {
		t.Fatalf("err = %v after %d calls", err, calls)
	}
	calls = 0
	start := time.Now()
	err = tp.c.do(ctx, func() error { calls++; return gotpm.TPMRCYielded })
	if !errors.Is(err, gotpm.TPMRCYielded) || calls != maxWarningRetries+1 {
		t.Fatalf("err = %v after %d calls", err, calls)
	}
	t.Logf("gave up after %d calls in %v: %v", calls, time.Since(start).Round(time.Millisecond), err)
}

// TestConnectionKeepsNoAuth: auth options given to Open (OpenKey passes
// the reference's) configure keys, not the TPM or its shared connection,
// which outlive the key and would keep the auth value with them.
func TestConnectionKeepsNoAuth(t *testing.T) {
	_, tp := startTPM(t, WithAuth([]byte("secret")), WithAuthPrompt(func() ([]byte, error) { return []byte("x"), nil }), WithAllowSign())
	for _, c := range []*config{tp.cfg, tp.c.cfg} {
		if c.authSrc != nil || c.authPrompt != nil || c.allowSign {
			t.Fatal("the TPM or its connection keeps the auth source, prompt or allow-sign given to Open")
		}
	}
}
