package plugins_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/internal/latency"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// peers returns n peer public keys on P-256.
func peers(b *testing.B, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = k.PublicKey().Bytes()
	}
	return out
}

// BenchmarkECDHOverhead compares a SoftHSM P-256 ECDH through the plugin
// with the same key called in this process, interleaved in one loop so
// that both see the same machine load. It reports each one's p50 and p99
// and the p50 the plugin adds.
func BenchmarkECDHOverhead(b *testing.B) {
	b.Run("softhsm", func(b *testing.B) {
		bk := softHSMKeys(b, nil)
		local, err := pkcs11.OpenKey(context.Background(), bk.refs[0], pkcs11.WithPIN(pinOf(bk)))
		if err != nil {
			b.Fatal(err)
		}
		defer local.Close()
		benchOverhead(b, bk, local)
	})
	b.Run("soft", func(b *testing.B) {
		ref, k := softKey(b, kem.DHKEMP256HKDFSHA256)
		benchOverhead(b, backendKeys{refs: []string{ref}}, k.(kem.Exchanger))
	})
}

func benchOverhead(b *testing.B, bk backendKeys, local kem.Exchanger) {
	ctx := context.Background()
	c := newClient(b, plugins.Config{Keys: bk.refs, Env: append(bk.env, benchEnv()...), Logger: quietLogger()})
	remote, err := c.Key(ctx, bk.refs[0])
	if err != nil {
		b.Fatal(err)
	}
	ps := peers(b, 64)
	for i := range 50 { // warm up both paths
		local.ECDHContext(ctx, ps[i%len(ps)])
		remote.ECDHContext(ctx, ps[i%len(ps)])
	}
	inproc := make([]time.Duration, 0, b.N)
	plugin := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		p := ps[i%len(ps)]
		t0 := time.Now()
		if _, err := local.ECDHContext(ctx, p); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := remote.ECDHContext(ctx, p); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		inproc = append(inproc, t1.Sub(t0))
		plugin = append(plugin, t2.Sub(t1))
	}
	b.StopTimer()
	in50 := latency.Report(b, "inproc-", inproc, time.Microsecond)
	plugin50 := latency.Report(b, "plugin-", plugin, time.Microsecond)
	b.ReportMetric(plugin50-in50, "added-p50-µs")
}

// BenchmarkThroughput measures SoftHSM P-256 ECDH throughput through the
// plugin with parallel callers, with one and with two plugin processes
// (SoftHSM serialises work inside a process), and in this process for
// reference.
func BenchmarkThroughput(b *testing.B) {
	bk := softHSMKeys(b, nil)
	ctx := context.Background()
	ps := peers(b, 64)
	run := func(b *testing.B, x kem.Exchanger) {
		b.SetParallelism(4)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := x.ECDHContext(ctx, ps[i%len(ps)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ecdh/s")
	}
	for _, n := range []int{1, 2} {
		b.Run("processes="+strconv.Itoa(n), func(b *testing.B) {
			c := newClient(b, plugins.Config{Keys: bk.refs, Env: append(bk.env, benchEnv()...), Processes: n, Logger: quietLogger()})
			k, err := c.Key(ctx, bk.refs[0])
			if err != nil {
				b.Fatal(err)
			}
			for i := range 20 {
				k.ECDHContext(ctx, ps[i%len(ps)])
			}
			b.ResetTimer()
			run(b, k)
		})
	}
	b.Run("inprocess", func(b *testing.B) {
		local, err := pkcs11.OpenKey(ctx, bk.refs[0], pkcs11.WithPIN(pinOf(bk)))
		if err != nil {
			b.Fatal(err)
		}
		defer local.Close()
		b.ResetTimer()
		run(b, local)
	})
}

// BenchmarkStartup measures a plugin's start-up to its first call:
// NewClient (process start, AutoMTLS handshake, Describe), Key and one
// ECDH. Close is not timed.
func BenchmarkStartup(b *testing.B) {
	ref, _ := softKey(b, kem.DHKEMP256HKDFSHA256)
	sum, err := plugins.FileChecksum(pluginBin)
	if err != nil {
		b.Fatal(err)
	}
	hsm := softHSMKeys(b, nil)
	for _, tc := range []struct {
		name     string
		keys     []string
		env      []string
		checksum []byte
	}{
		{"soft", []string{ref}, nil, nil},
		{"soft+checksum", []string{ref}, nil, sum},
		{"pkcs11", hsm.refs, hsm.env, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ps := peers(b, 1)
			lat := make([]time.Duration, 0, b.N)
			ctx := context.Background()
			for range b.N {
				t0 := time.Now()
				c, err := plugins.NewClient(plugins.Config{Path: pluginBin, Keys: tc.keys, Env: tc.env, Checksum: tc.checksum, Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				k, err := c.Key(ctx, tc.keys[0])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := k.ECDHContext(ctx, ps[0]); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
			latency.Report(b, "", lat, time.Millisecond)
		})
	}
}

// benchEnv returns extra plugin environment entries for the benchmarks,
// from TWOWAY_BENCH_PLUGIN_ENV (comma-separated, e.g. GOMAXPROCS=1).
func benchEnv() []string {
	v := os.Getenv("TWOWAY_BENCH_PLUGIN_ENV")
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}
