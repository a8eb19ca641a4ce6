package pkcs11_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
)

// TestConcurrentECDH runs 8 goroutines doing ECDH for 2 seconds over keys
// of every curve on two Tokens of the same token (one of them running
// exchanges on their own goroutines, WithAbandonOnCancel), with pools
// smaller than the number of goroutines, and pulls all sessions from under
// them once half-way (between exchanges: every Token must recover).
func TestConcurrentECDH(t *testing.T) {
	sh, tok := openToken(t, pkcs11.WithPoolSize(3))
	ctx := context.Background()
	tok2, err := pkcs11.OpenToken(ctx, sh.URI(), pkcs11.WithPoolSize(2), pkcs11.WithAbandonOnCancel(true))
	if err != nil {
		t.Fatal(err)
	}
	defer tok2.Close()
	var keys, keys2 []*pkcs11.Key
	for i, c := range dhCurves {
		k, err := tok.GenerateKey(ctx, c.kem, pkcs11.KeyRef{ID: []byte{0x70, byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		k2, err := tok2.FindKey(ctx, pkcs11.KeyRef{ID: k.ID()})
		if err != nil {
			t.Fatal(err)
		}
		keys2 = append(keys2, k2)
	}
	deadline := time.Now().Add(2 * time.Second)
	var ops, fails atomic.Int64
	var wg sync.WaitGroup
	// Closing a session while another thread uses it is undefined in
	// PKCS#11 (SoftHSM crashes now and then), so the sessions are pulled
	// between exchanges: each exchange holds pause shared.
	var pause sync.RWMutex
	for g := range 8 {
		wg.Go(func() {
			for i := g; time.Now().Before(deadline); i++ {
				c := dhCurves[i%len(dhCurves)]
				k := keys[i%len(keys)]
				if g%2 == 1 {
					k = keys2[i%len(keys)]
				}
				peer, agree := softwarePeer(t, c.ecdh)
				var z []byte
				var err error
				pause.RLock()
				if c.ecdh != nil && i%2 == 0 {
					p, _ := c.ecdh.NewPublicKey(peer)
					z, err = k.ECDH(p)
				} else {
					z, err = k.ECDHContext(ctx, peer)
				}
				pause.RUnlock()
				if err != nil {
					fails.Add(1)
					t.Errorf("goroutine %d, %s: %v", g, c.name, err)
					return
				}
				if !bytes.Equal(z, agree(k.PublicKeyBytes())) {
					fails.Add(1)
					t.Errorf("goroutine %d, %s: wrong secret", g, c.name)
					return
				}
				ops.Add(1)
			}
		})
	}
	time.Sleep(time.Second)
	pause.Lock()
	if err := pkcs11.RawCtx(tok).CloseAllSessions(tok.Info().SlotID); err != nil {
		t.Error(err)
	}
	pause.Unlock()
	wg.Wait()
	t.Logf("%d exchanges, %d failures", ops.Load(), fails.Load())
	if ops.Load() == 0 {
		t.Fatal("no exchange")
	}
}
