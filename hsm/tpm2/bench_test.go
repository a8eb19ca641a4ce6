package tpm2

import (
	"context"
	"crypto/ecdh"
	"fmt"
	"slices"
	"testing"
	"time"

	gotpm "github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/twoway-hsm/twoway-hsm/internal/latency"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// BenchmarkECDH measures Key.ECDHContext alone, per curve: salted HMAC
// session with response encryption, peer validation, locking, retries. It
// is the one to profile; BenchmarkECDHPaired compares it with bare go-tpm
// calls. It reports ns/op and the p50 and p99 latency in µs.
func BenchmarkECDH(b *testing.B) {
	for _, curve := range allCurves {
		b.Run(fmt.Sprint(curve), func(b *testing.B) {
			ctx := context.Background()
			_, _, k := benchKey(b, curve)
			peer := softwarePeer(b, curve).PublicKey().Bytes()
			runLatency(b, func() error {
				z, err := k.ECDHContext(ctx, peer)
				clear(z)
				return err
			})
		})
	}
}

// benchKey starts an swtpm and creates a key on curve there, skipping the
// benchmark when the TPM lacks the curve.
func benchKey(b *testing.B, curve ecdh.Curve) (*testenv.SWTPM, *TPM, *Key) {
	b.Helper()
	sw, tp := startTPM(b)
	if have, _ := tp.Curves(testCtx(b)); !slices.Contains(have, curve) {
		b.Skipf("TPM lacks %v", curve)
	}
	return sw, tp, createKey(b, tp, curve)
}

// runLatency runs op in a b.Loop, and reports p50 and p99 latencies.
func runLatency(b *testing.B, op func() error) {
	b.Helper()
	if err := op(); err != nil { // warm up: load, session
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, 4096)
	for b.Loop() {
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	latency.Report(b, "", lat, time.Microsecond)
}

func flushHandle(tr transport.TPM, h gotpm.TPMHandle) {
	gotpm.FlushContext{FlushHandle: h}.Execute(tr)
}

// BenchmarkECDHPaired compares, per curve, TPM2_ECDH_ZGen
//
//   - backend:  Key.ECDHContext, as in BenchmarkECDH;
//   - bare:     go-tpm's ECDHZGen with a plain password session (nothing
//     encrypted: the floor);
//   - bare-enc: go-tpm's ECDHZGen with its own salted HMAC session and
//     response encryption (what the session costs, without this package),
//
// interleaved, one operation of each per iteration over the same
// connection (the bare calls borrow the backend's transport under its
// lock, with their own loaded copy of the key), so machine load drifts
// affect all three alike.
// It reports each variant's p50 and p99 in µs and the ratios of the p50s;
// ns/op is for the three operations together.
func BenchmarkECDHPaired(b *testing.B) {
	for _, curve := range allCurves {
		b.Run(fmt.Sprint(curve), func(b *testing.B) {
			ctx := context.Background()
			_, tp, k := benchKey(b, curve)
			peer := softwarePeer(b, curve).PublicKey().Bytes()
			size := k.KEM().DHSize()
			if _, err := k.ECDHContext(ctx, peer); err != nil { // load key, start session
				b.Fatal(err)
			}

			// A second loaded copy of the key and a go-tpm session, for
			// the bare calls.
			c := tp.c
			c.lock(ctx)
			p := c.parents[k.parentID]
			ld, err := gotpm.Load{ParentHandle: p.authHandle(gotpm.PasswordAuth(nil)), InPrivate: k.blob.Privkey, InPublic: k.blob.Pubkey}.Execute(c.tr)
			if err != nil {
				c.unlock()
				b.Fatal(err)
			}
			encSess, closeSess, err := gotpm.HMACSession(c.tr, gotpm.TPMAlgSHA256, 32,
				gotpm.Salted(p.handle, p.pub), gotpm.AESEncryption(128, gotpm.EncryptOut))
			c.unlock()
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				c.lock(ctx)
				closeSess()
				flushHandle(c.tr, ld.ObjectHandle)
				c.unlock()
			}()
			bare := func(s gotpm.Session) func() error {
				cmd := gotpm.ECDHZGen{
					KeyHandle: gotpm.AuthHandle{Handle: ld.ObjectHandle, Name: ld.Name, Auth: s},
					InPoint: gotpm.New2B(gotpm.TPMSECCPoint{
						X: gotpm.TPM2BECCParameter{Buffer: peer[1 : 1+size]},
						Y: gotpm.TPM2BECCParameter{Buffer: peer[1+size:]},
					}),
				}
				return func() error {
					c.lock(ctx)
					defer c.unlock()
					_, err := cmd.Execute(c.tr)
					return err
				}
			}
			ops := []func() error{
				func() error { z, err := k.ECDHContext(ctx, peer); clear(z); return err },
				bare(gotpm.PasswordAuth(nil)),
				bare(encSess),
			}
			names := []string{"backend", "bare", "bare-enc"}
			lat := make([][]time.Duration, len(ops))
			for b.Loop() {
				for i, op := range ops {
					t0 := time.Now()
					if err := op(); err != nil {
						b.Fatalf("%s: %v", names[i], err)
					}
					lat[i] = append(lat[i], time.Since(t0))
				}
			}
			p50 := make([]float64, len(ops))
			for i := range ops {
				p50[i] = latency.Report(b, names[i]+"-", lat[i], time.Microsecond)
			}
			b.ReportMetric(p50[0]/p50[1], "backend/bare-p50")
			b.ReportMetric(p50[0]/p50[2], "backend/bare-enc-p50")
			b.ReportMetric(p50[2]/p50[1], "bare-enc/bare-p50")
		})
	}
}
