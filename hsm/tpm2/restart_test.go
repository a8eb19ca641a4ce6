package tpm2

import (
	"context"
	"crypto/ecdh"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// TestReconnectAfterRestart: a key from a TSS2 file keeps working through
// the same open Key after swtpm is stopped gracefully or killed with
// SIGKILL and started again on the same state, and a fresh OpenKey works
// too.
func TestReconnectAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		unix bool
		kill bool
	}{
		{"tcp/graceful", false, false},
		{"tcp/kill9", false, true},
		{"unix/graceful", true, false},
		{"unix/kill9", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []testenv.SWTPMOption
			if tc.unix {
				opts = append(opts, testenv.SWTPMUnixSocket())
			}
			sw := testenv.StartSWTPM(t, opts...)
			ctx := testCtx(t)
			path := filepath.Join(t.TempDir(), "key.pem")
			authFile := filepath.Join(t.TempDir(), "auth")
			writeFile(t, authFile, "restart-pw\n")

			tp, err := Open(ctx, sw.Transport())
			if err != nil {
				t.Fatal(err)
			}
			created, err := tp.CreateKey(ctx, ecdh.P256(), WithAuthFile(authFile))
			if err != nil {
				t.Fatal(err)
			}
			if err := created.WriteKeyFile(path); err != nil {
				t.Fatal(err)
			}
			created.Close()
			tp.Close()

			ref := (&KeyRef{File: path, TPM: sw.Transport(), AuthSource: authFile}).String()
			rec := &logRecorder{}
			k, err := OpenKey(ctx, ref, WithLogger(slog.New(rec)))
			if err != nil {
				t.Fatalf("OpenKey(%s): %v", ref, err)
			}
			defer k.Close()
			checkECDH(t, ctx, k)

			for round := range 2 {
				if tc.kill {
					sw.Kill9()
				} else {
					sw.Stop()
				}
				sw.Start()
				// The same Key reconnects, recreates the SRK and the
				// session, and reloads itself from its blob.
				checkECDH(t, ctx, k)
				checkECDH(t, ctx, k)
				if n := rec.count("connection lost"); n != round+1 {
					t.Fatalf("round %d: %d reconnects logged, want %d", round, n, round+1)
				}
			}

			// A fresh OpenKey through the same reference, next to the
			// open key (they share the connection).
			k2, err := OpenKey(ctx, ref)
			if err != nil {
				t.Fatalf("fresh OpenKey: %v", err)
			}
			checkECDH(t, ctx, k2)
			k2.Close()
			k.Close()
			assertNoLeaks(t, sw.Transport())
		})
	}
}

// TestTPMInitUnderOpenConnection: a platform reset (TPM_Init) while the
// connection stays up makes the TPM answer TPM_RC_INITIALIZE; the backend
// sends TPM2_Startup and recreates its state.
func TestTPMInitUnderOpenConnection(t *testing.T) {
	rec := &logRecorder{}
	sw, tp := startTPM(t, WithLogger(slog.New(rec)))
	ctx := testCtx(t)
	k := createKey(t, tp, ecdh.P384(), WithAuth([]byte("x")))
	checkECDH(t, ctx, k)
	sw.Init()
	checkECDH(t, ctx, k)
	sw.Init()
	checkECDH(t, ctx, k)
	if n := rec.count("TPM2_Startup"); n != 2 {
		t.Fatalf("%d TPM2_Startup logged, want 2", n)
	}
}

// TestFlushedHandleRecovers: someone flushes our loaded key and session
// (TPM_RC_HANDLE / TPM_RC_REFERENCE_*); the backend reloads and carries on.
func TestFlushedHandleRecovers(t *testing.T) {
	rec := &logRecorder{}
	_, tp := startTPM(t, WithLogger(slog.New(rec)))
	ctx := testCtx(t)
	k := createKey(t, tp, ecdh.P256())
	checkECDH(t, ctx, k)
	// Flush everything behind the backend's back.
	c := tp.c
	if err := c.lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.flushStale(); err != nil {
		t.Fatal(err)
	}
	c.unlock()
	checkECDH(t, ctx, k)
	if n := rec.count("state lost"); n != 1 {
		t.Fatalf("%d state losses logged, want 1", n)
	}
}

// TestTPMUnavailable: with swtpm down, ECDH fails after bounded retries with
// ErrTPMUnavailable; once swtpm is back, the same key works again.
func TestTPMUnavailable(t *testing.T) {
	sw, tp := startTPM(t)
	ctx := testCtx(t)
	k := createKey(t, tp, ecdh.P256())
	checkECDH(t, ctx, k)

	sw.Stop()
	start := time.Now()
	_, err := k.ECDHContext(ctx, softwarePeer(t, ecdh.P256()).PublicKey().Bytes())
	if !errors.Is(err, ErrTPMUnavailable) {
		t.Fatalf("err = %v, want ErrTPMUnavailable", err)
	}
	t.Logf("gave up after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to give up", d)
	}

	// A short context deadline wins over the retry schedule.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = k.ECDHContext(short, softwarePeer(t, ecdh.P256()).PublicKey().Bytes())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}

	sw.Start()
	checkECDH(t, ctx, k)

	// Opening a TPM that is not there fails at once.
	sw.Stop()
	start = time.Now()
	_, err = Open(ctx, "tcp:127.0.0.1:1")
	if !errors.Is(err, ErrTPMUnavailable) || time.Since(start) > 5*time.Second {
		t.Fatalf("Open(nothing) = %v after %v", err, time.Since(start))
	}
	_, err = Open(ctx, "/nonexistent/tpmrm0")
	if !errors.Is(err, ErrTPMUnavailable) {
		t.Fatalf("Open(missing device) = %v", err)
	}
	t.Logf("missing device: %v", err)
}
