package tpm2

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gotpm "github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// TestConcurrentECDH: 8 goroutines doing ECDH for 2 seconds on keys that
// share one connection, while another goroutine opens and closes keys;
// afterwards nothing is left loaded in the TPM.
func TestConcurrentECDH(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	tp, err := Open(ctx, sw.Transport())
	if err != nil {
		t.Fatal(err)
	}
	var keys []*Key
	for i, curve := range []ecdh.Curve{ecdh.P256(), ecdh.P384(), ecdh.P256()} {
		var opts []Option
		if i == 2 {
			opts = append(opts, WithAuth([]byte("concurrent")))
		}
		k, err := tp.CreateKey(ctx, curve, opts...)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	path := filepath.Join(dir, "k.pem")
	if err := keys[0].WriteKeyFile(path); err != nil {
		t.Fatal(err)
	}
	ref := "tpm2:file=" + path + "?tpm=" + sw.Transport()

	const workers = 8
	const runFor = 2 * time.Second
	var ops atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers+2) // one error at most from each goroutine
	stop := time.Now().Add(runFor)
	for w := range workers {
		wg.Go(func() {
			k := keys[w%len(keys)]
			peer := softwarePeer(t, k.Curve())
			want, _ := peer.ECDH(k.PublicKey())
			for time.Now().Before(stop) {
				got, err := k.ECDHContext(ctx, peer.PublicKey().Bytes())
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, want) {
					errs <- errMismatch
					return
				}
				ops.Add(1)
			}
		})
	}
	// Keys come and go while the others work.
	wg.Go(func() {
		for time.Now().Before(stop) {
			k, err := OpenKey(ctx, ref)
			if err != nil {
				errs <- err
				return
			}
			if _, err := k.ECDHContext(ctx, softwarePeer(t, ecdh.P256()).PublicKey().Bytes()); err != nil {
				errs <- err
				return
			}
			k.Close()
			ops.Add(1)
		}
	})
	// Meanwhile the backend holds one session and at most three objects.
	wg.Go(func() {
		time.Sleep(runFor / 2)
		err := tp.c.do(ctx, func() error {
			tr, err := tp.c.handles(gotpm.TPMHTTransient)
			if err != nil {
				return err
			}
			ss, err := tp.c.handles(gotpm.TPMHTHMACSession)
			if err != nil {
				return err
			}
			t.Logf("mid-run: %d transient objects, %d sessions", len(tr), len(ss))
			if len(ss) != 1 || len(tr) > 3 {
				t.Errorf("mid-run: transient %v, sessions %v", tr, ss)
			}
			return nil
		})
		if err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent ECDH: %v", err)
	}
	t.Logf("%d operations in %v", ops.Load(), runFor)
	if ops.Load() < workers {
		t.Errorf("only %d operations", ops.Load())
	}
	for _, k := range keys {
		k.Close()
	}
	tp.Close()
	assertNoLeaks(t, sw.Transport())
}

var errMismatch = errors.New("ECDH result differs from software")

// recordingTransport keeps copies of every command and response.
type recordingTransport struct {
	transport.TPMCloser
	mu        sync.Mutex
	commands  [][]byte
	responses [][]byte
}

func (r *recordingTransport) Send(cmd []byte) ([]byte, error) {
	rsp, err := r.TPMCloser.Send(cmd)
	r.mu.Lock()
	r.commands = append(r.commands, bytes.Clone(cmd))
	r.responses = append(r.responses, bytes.Clone(rsp))
	r.mu.Unlock()
	return rsp, err
}

// TestNothingSecretOnTheWire: the shared secret (Z) and the key's auth
// value never appear in the bytes exchanged with the TPM, because ECDH_ZGen
// runs in a salted session with response encryption and authorizes with an
// HMAC rather than a password, TPM2_Create gets the new key's auth value
// in an encrypted parameter, and TPM2_Import inside the duplicate.
func TestNothingSecretOnTheWire(t *testing.T) {
	_, tp := startTPM(t)
	ctx := testCtx(t)
	c := tp.c
	if err := c.lock(ctx); err != nil {
		t.Fatal(err)
	}
	rec := &recordingTransport{TPMCloser: c.tr}
	c.tr = rec
	c.unlock()

	auth := []byte("wire-auth-7Hq9xK")
	imported, err := tp.ImportKey(ctx, softwarePeer(t, ecdh.P256()), WithAuth(auth))
	if err != nil {
		t.Fatal(err)
	}
	closeKey(t, imported)
	var secrets [][]byte
	for _, k := range []*Key{imported, createKey(t, tp, ecdh.P256(), WithAuth(auth))} {
		peer := softwarePeer(t, ecdh.P256())
		z, err := k.ECDHContext(ctx, peer.PublicKey().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		want, _ := peer.ECDH(k.PublicKey())
		if !bytes.Equal(z, want) {
			t.Fatal("mismatch")
		}
		secrets = append(secrets, z[:16], z[16:])
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := range rec.commands {
		for _, buf := range [][]byte{rec.commands[i], rec.responses[i]} {
			for _, s := range secrets {
				if bytes.Contains(buf, s) {
					t.Fatalf("exchange %d carries a shared secret in the clear", i)
				}
			}
			if bytes.Contains(buf, auth) {
				t.Fatalf("exchange %d carries the auth value in the clear", i)
			}
		}
	}
	t.Logf("checked %d command/response pairs", len(rec.commands))
}
