package pkcs11_test

import (
	"context"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/internal/latency"
)

// BenchmarkECDH compares, in one run, an exchange through the backend
// (Key.ECDHContext: validation, pool, handle cache, recovery wrapper) with
// the bare miekg/pkcs11 sequence it wraps (C_DeriveKey +
// C_GetAttributeValue + C_DestroyObject on a pre-opened session), per
// curve, with one and two goroutines. Besides ns/op it reports the median
// and 99th percentile latency of single exchanges (p50-µs, p99-µs).
//
//	go test -run '^$' -bench ECDH -count 5 ./hsm/pkcs11/
func BenchmarkECDH(b *testing.B) {
	sh, tok := openToken(b, pkcs11.WithPoolSize(2))
	ctx := context.Background()
	c := pkcs11.RawCtx(tok)
	var sessions [2]p11.SessionHandle
	for i := range sessions {
		_, sessions[i] = rawSession(b, sh, tok)
	}
	// A second Token on the same token whose exchanges can be abandoned.
	abandonTok, err := pkcs11.OpenToken(ctx, sh.URI(), pkcs11.WithPoolSize(2), pkcs11.WithAbandonOnCancel(true))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { abandonTok.Close() })
	for i, cv := range dhCurves[:4] {
		k, err := tok.GenerateKey(ctx, cv.kem, pkcs11.KeyRef{ID: []byte{0x90, byte(i)}})
		if err != nil {
			b.Fatal(err)
		}
		peer, _ := softwarePeer(b, cv.ecdh)
		ka, err := abandonTok.FindKey(ctx, pkcs11.KeyRef{ID: k.ID()})
		if err != nil {
			b.Fatal(err)
		}
		// The bare sequence finds its own handle, as an application
		// would, once.
		priv := findPrivate(b, c, sessions[0], k.ID())
		size := cv.kem.DHSize()
		tmpl := []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
			p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_SENSITIVE, false),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
			p11.NewAttribute(p11.CKA_VALUE_LEN, size),
		}
		bare := func(s p11.SessionHandle) error {
			mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDH1_DERIVE, p11.NewECDH1DeriveParams(p11.CKD_NULL, nil, peer))}
			obj, err := c.DeriveKey(s, mech, priv, tmpl)
			if err != nil {
				return err
			}
			a, err := c.GetAttributeValue(s, obj, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
			if err == nil {
				clear(a[0].Value)
			}
			c.DestroyObject(s, obj)
			return err
		}
		backend := func(int) error {
			z, err := k.ECDHContext(ctx, peer)
			clear(z)
			return err
		}
		withDeadline := func(k *pkcs11.Key) func(int) error {
			return func(int) error {
				dctx, cancel := context.WithTimeout(ctx, time.Minute)
				z, err := k.ECDHContext(dctx, peer)
				cancel()
				clear(z)
				return err
			}
		}
		deadline, abandon := withDeadline(k), withDeadline(ka)
		b.Run(cv.name+"/paired", func(b *testing.B) {
			runPaired(b, []string{"bare", "backend", "backend-deadline", "backend-abandon"}, []func() error{
				func() error { return bare(sessions[0]) },
				func() error { return backend(0) },
				func() error { return deadline(0) },
				func() error { return abandon(0) },
			})
		})
		b.Run(cv.name+"/paired-2g", func(b *testing.B) {
			runPaired2(b, []string{"bare", "backend"}, []func(g int) error{
				func(g int) error { return bare(sessions[g]) },
				backend,
			})
		})
		b.Run(cv.name+"/bare", func(b *testing.B) { runLatency(b, 1, func(g int) error { return bare(sessions[g]) }) })
		b.Run(cv.name+"/backend", func(b *testing.B) { runLatency(b, 1, backend) })
		b.Run(cv.name+"/backend-deadline", func(b *testing.B) { runLatency(b, 1, deadline) })
		b.Run(cv.name+"/bare-2g", func(b *testing.B) { runLatency(b, 2, func(g int) error { return bare(sessions[g]) }) })
		b.Run(cv.name+"/backend-2g", func(b *testing.B) { runLatency(b, 2, backend) })
	}
}

// runLatency runs b.N calls of op split over g goroutines (goroutine index
// passed to op), timing each call, and reports p50-µs, p99-µs and ops/s.
func runLatency(b *testing.B, g int, op func(g int) error) {
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	b.ResetTimer()
	start := time.Now()
	for w := range g {
		wg.Go(func() {
			for i := w; i < b.N; i += g {
				t0 := time.Now()
				err := op(w)
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	latency.Report(b, "", lat, time.Microsecond)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

// runPaired runs the variants in turn, b.N rounds, rotating which goes
// first, so that drift in machine load hits them alike; it reports each
// variant's p50 and p99 and the p50 ratio of each to the first.
func runPaired(b *testing.B, names []string, ops []func() error) {
	lat := make([][]time.Duration, len(ops))
	for i := range lat {
		lat[i] = make([]time.Duration, b.N)
	}
	b.ResetTimer()
	for n := range b.N {
		for j := range ops {
			v := (n + j) % len(ops)
			t0 := time.Now()
			if err := ops[v](); err != nil {
				b.Fatal(err)
			}
			lat[v][n] = time.Since(t0)
		}
	}
	b.StopTimer()
	p50 := make([]float64, len(ops))
	for v := range ops {
		p50[v] = latency.Report(b, names[v]+"-", lat[v], time.Microsecond)
	}
	for v := 1; v < len(ops); v++ {
		b.ReportMetric(p50[v]/p50[0], names[v]+"/"+names[0]+"-p50")
	}
}

// runPaired2 is runPaired with two goroutines: each round runs a batch of
// 2x16 calls of every variant in turn (rotating the order), and reports
// each variant's throughput, p50 and p99, and the throughput ratio of each
// variant to the first.
func runPaired2(b *testing.B, names []string, ops []func(g int) error) {
	const batch = 16
	lat := make([][]time.Duration, len(ops))
	busy := make([]time.Duration, len(ops))
	for i := range lat {
		lat[i] = make([]time.Duration, 0, 2*batch*b.N)
	}
	var mu sync.Mutex
	b.ResetTimer()
	for n := range b.N {
		for j := range ops {
			v := (n + j) % len(ops)
			var wg sync.WaitGroup
			var firstErr error
			t0 := time.Now()
			for g := range 2 {
				wg.Go(func() {
					local := make([]time.Duration, 0, batch)
					for range batch {
						s := time.Now()
						if err := ops[v](g); err != nil {
							mu.Lock()
							firstErr = err
							mu.Unlock()
							return
						}
						local = append(local, time.Since(s))
					}
					mu.Lock()
					lat[v] = append(lat[v], local...)
					mu.Unlock()
				})
			}
			wg.Wait()
			busy[v] += time.Since(t0)
			if firstErr != nil {
				b.Fatal(firstErr)
			}
		}
	}
	b.StopTimer()
	tput := make([]float64, len(ops))
	for v := range ops {
		tput[v] = float64(len(lat[v])) / busy[v].Seconds()
		b.ReportMetric(tput[v], names[v]+"-ops/s")
		latency.Report(b, names[v]+"-", lat[v], time.Microsecond)
	}
	for v := 1; v < len(ops); v++ {
		b.ReportMetric(tput[v]/tput[0], names[v]+"/"+names[0]+"-ops")
	}
}
