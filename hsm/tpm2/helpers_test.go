package tpm2

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gotpm "github.com/google/go-tpm/tpm2"

	"github.com/twoway-hsm/twoway-hsm/testenv"
)

var allCurves = []ecdh.Curve{ecdh.P256(), ecdh.P384(), ecdh.P521()}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openTPM starts nothing; it opens the backend on an swtpm and closes it at
// the end of the test.
func openTPM(t testing.TB, sw *testenv.SWTPM, opts ...Option) *TPM {
	t.Helper()
	tp, err := Open(testCtx(t), sw.Transport(), opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", sw.Transport(), err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

// startTPM starts a fresh swtpm for the test and opens the backend on it.
func startTPM(t testing.TB, opts ...Option) (*testenv.SWTPM, *TPM) {
	t.Helper()
	sw := testenv.StartSWTPM(t)
	return sw, openTPM(t, sw, opts...)
}

// createKey creates a key on curve that is closed at the end of the test.
func createKey(t testing.TB, tp *TPM, curve ecdh.Curve, opts ...Option) *Key {
	t.Helper()
	k, err := tp.CreateKey(testCtx(t), curve, opts...)
	if err != nil {
		t.Fatalf("CreateKey(%v): %v", curve, err)
	}
	closeKey(t, k)
	return k
}

// closeKey closes k at the end of the test.
func closeKey(t testing.TB, k *Key) {
	t.Cleanup(func() { k.Close() })
}

// softwarePeer returns an ephemeral software key on curve.
func softwarePeer(t testing.TB, curve ecdh.Curve) *ecdh.PrivateKey {
	t.Helper()
	p, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkECDH checks that k's ECDH with a fresh peer matches the peer-side
// software computation.
func checkECDH(t testing.TB, ctx context.Context, k *Key) {
	t.Helper()
	peer := softwarePeer(t, k.Curve())
	got, err := k.ECDHContext(ctx, peer.PublicKey().Bytes())
	if err != nil {
		t.Fatalf("ECDHContext: %v", err)
	}
	want, err := peer.ECDH(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("ECDH mismatch on %v:\n tpm %x\n sw  %x", k.Curve(), got, want)
	}
}

// tpmHandles lists the transient objects and loaded sessions on the TPM
// through a fresh raw connection (so the backend must be closed, since
// swtpm serves one connection at a time).
func tpmHandles(t testing.TB, transport string) (transient, sessions []gotpm.TPMHandle) {
	t.Helper()
	tr, err := OpenTransport(testCtx(t), transport)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	c := &conn{tr: tr}
	transient, err = c.handles(gotpm.TPMHTTransient)
	if err != nil {
		t.Fatal(err)
	}
	for _, ht := range []gotpm.TPMHT{gotpm.TPMHTHMACSession, gotpm.TPMHTPolicySession} {
		hs, err := c.handles(ht)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, hs...)
	}
	return transient, sessions
}

// assertNoLeaks checks that nothing is left loaded on the TPM.
func assertNoLeaks(t testing.TB, transport string) {
	t.Helper()
	tr, ss := tpmHandles(t, transport)
	if len(tr) != 0 || len(ss) != 0 {
		t.Errorf("leaked handles: transient %v, sessions %v", tr, ss)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// logRecorder is a slog handler that keeps the messages it sees.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count returns how many messages contain substr.
func (r *logRecorder) count(substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}
