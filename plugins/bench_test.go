package plugins_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/internal/latency"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/plugins/keyset"
)

// peers returns n peer public keys on P-256.
func peers(b testing.TB, n int) [][]byte {
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

// BenchmarkECDHOverhead compares a P-256 ECDH through the plugin with the
// same key called in this process, through the bare plugin (the reference:
// go-plugin's gRPC transport, which carried the calls before the data
// channel, serving the same key with nothing else, see barePlugin), and
// with a 64-byte round trip between two threads over pipes (the floor of
// any exchange between processes), in one loop and in rotating order so
// that all four see the same machine load. It reports each one's p50 and
// p99, the p50 that the plugin and the bare plugin add to the call in
// process, the plugin's p50 beyond the bare plugin's, and what the plugin
// adds beyond the pipe round trip (added-beyond-pipe-p50-µs).
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
	bare := startBare(b, bk).stream(b, bk.refs[0])
	ping, stopPipe := pipePingPong(b, 64)
	defer stopPipe()
	ps := peers(b, 64)
	impls := []func(peer []byte) ([]byte, error){
		func(p []byte) ([]byte, error) { return local.ECDHContext(ctx, p) },
		func(p []byte) ([]byte, error) { return remote.ECDHContext(ctx, p) },
		bare.ECDH,
		func([]byte) ([]byte, error) { return nil, ping() },
	}
	for i := range 50 { // warm up every path
		for _, f := range impls {
			if _, err := f(ps[i%len(ps)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	lat := make([][]time.Duration, len(impls))
	for j := range lat {
		lat[j] = make([]time.Duration, 0, b.N)
	}
	b.ResetTimer()
	for i := range b.N {
		p := ps[i%len(ps)]
		for k := range impls {
			j := (i + k) % len(impls)
			t0 := time.Now()
			if _, err := impls[j](p); err != nil {
				b.Fatal(err)
			}
			lat[j] = append(lat[j], time.Since(t0))
		}
	}
	b.StopTimer()
	in50 := latency.Report(b, "inproc-", lat[0], time.Microsecond)
	plugin50 := latency.Report(b, "plugin-", lat[1], time.Microsecond)
	bare50 := latency.Report(b, "bare-", lat[2], time.Microsecond)
	pipe50 := latency.Report(b, "pipe-", lat[3], time.Microsecond)
	b.ReportMetric(plugin50-in50, "added-p50-µs")
	b.ReportMetric(plugin50-in50-pipe50, "added-beyond-pipe-p50-µs")
	b.ReportMetric(bare50-in50, "bare-added-p50-µs")
	b.ReportMetric(plugin50-bare50, "beyond-bare-p50-µs")
}

// BenchmarkThroughput measures SoftHSM P-256 ECDH throughput with four
// parallel callers: through the plugin with one and with two plugin
// processes (SoftHSM serialises work inside a process), through the bare
// plugin (the gRPC reference, see barePlugin) with one and two processes,
// and in this process. The five take turns, each making 400
// calls per round (b.N rounds), so that they share the machine's noise.
// Each reports its calls per second and the CPU time per call of this
// process and its plugin processes together. The ratios of two processes
// to one are reported as ratio-2to1 (plugin) and bare-ratio-2to1, and that
// of two plugin processes to the key in this process as
// ratio-2-to-inprocess.
func BenchmarkThroughput(b *testing.B) {
	const callers, round = 4, 400
	bk := softHSMKeys(b, nil)
	ctx := context.Background()
	ps := peers(b, 64)
	type impl struct {
		name string
		call []func(peer []byte) ([]byte, error) // one per caller
		pids []int
		n    int
		wall time.Duration
		cpu  time.Duration
	}
	var impls []*impl
	for _, n := range []int{1, 2} {
		c := newClient(b, plugins.Config{Keys: bk.refs, Env: append(bk.env, benchEnv()...), Processes: n, Logger: quietLogger()})
		k, err := c.Key(ctx, bk.refs[0])
		if err != nil {
			b.Fatal(err)
		}
		im := &impl{name: "plugin-" + strconv.Itoa(n), pids: c.PIDs()}
		if len(im.pids) != n {
			b.Fatalf("plugin processes: %v, want %d", im.pids, n)
		}
		for range callers {
			im.call = append(im.call, func(p []byte) ([]byte, error) { return k.ECDHContext(ctx, p) })
		}
		impls = append(impls, im)
	}
	for _, n := range []int{1, 2} {
		im := &impl{name: "bare-" + strconv.Itoa(n)}
		var procs []*bareClient
		for range n {
			bc := startBare(b, bk)
			procs = append(procs, bc)
			im.pids = append(im.pids, bc.pc.ReattachConfig().Pid)
		}
		for i := range callers {
			im.call = append(im.call, procs[i%n].stream(b, bk.refs[0]).ECDH)
		}
		impls = append(impls, im)
	}
	local, err := pkcs11.OpenKey(ctx, bk.refs[0], pkcs11.WithPIN(pinOf(bk)), pkcs11.WithPoolSize(callers))
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	inproc := &impl{name: "inprocess"}
	for range callers {
		inproc.call = append(inproc.call, func(p []byte) ([]byte, error) { return local.ECDHContext(ctx, p) })
	}
	impls = append(impls, inproc)

	// run makes n calls with the callers of im in parallel.
	run := func(im *impl, n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		cpu0 := cpuTime(b, im.pids)
		t0 := time.Now()
		for _, call := range im.call {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					if _, err := call(ps[i%int64(len(ps))]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		im.wall += time.Since(t0)
		im.cpu += cpuTime(b, im.pids) - cpu0
		im.n += n
	}
	for _, im := range impls { // warm up
		run(im, 40)
		im.n, im.wall, im.cpu = 0, 0, 0
	}
	b.ResetTimer()
	for r := range b.N {
		for k := range impls {
			run(impls[(r+k)%len(impls)], round)
		}
	}
	b.StopTimer()
	rate := map[string]float64{}
	for _, im := range impls {
		rate[im.name] = float64(im.n) / im.wall.Seconds()
		b.ReportMetric(rate[im.name], im.name+"-ecdh/s")
		b.ReportMetric(float64(im.cpu.Microseconds())/float64(im.n), im.name+"-cpu-µs/op")
	}
	b.ReportMetric(rate["plugin-2"]/rate["plugin-1"], "ratio-2to1")
	b.ReportMetric(rate["bare-2"]/rate["bare-1"], "bare-ratio-2to1")
	b.ReportMetric(rate["plugin-2"]/rate["inprocess"], "ratio-2-to-inprocess")
}

// schedStat returns the on-CPU time and the number of times it was
// scheduled onto a CPU (each wake-up counts once, and so does each return
// after being preempted), summed over the threads
// of process pid ("self" for this one), from /proc/PID/task/TID/schedstat.
// Threads that exited are not counted.
func schedStat(b testing.TB, pid string) (time.Duration, int64) {
	dir := "/proc/" + pid + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var cpu time.Duration
	var runs int64
	read := 0
	for _, t := range tasks {
		st, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited
		}
		read++
		f := strings.Fields(string(st))
		if len(f) != 3 {
			b.Fatalf("%s/%s/schedstat: %q", dir, t.Name(), st)
		}
		ns, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			b.Fatalf("%s/%s/schedstat: %v", dir, t.Name(), err)
		}
		cpu += time.Duration(ns)
		runs += n
	}
	if read == 0 {
		b.Fatalf("%s: no thread's schedstat could be read (a kernel without CONFIG_SCHED_INFO?)", dir)
	}
	return cpu, runs
}

// cpuTime returns the CPU time used so far by this process and the
// processes pids together.
func cpuTime(b *testing.B, pids []int) time.Duration {
	total, _ := schedStat(b, "self")
	for _, pid := range pids {
		cpu, _ := schedStat(b, strconv.Itoa(pid))
		total += cpu
	}
	return total
}

// BenchmarkRoundTripCost shows what one call costs and why: soft-key
// P-256 ECDH calls one after another through the plugin, through the bare
// plugin (the gRPC reference, see barePlugin) and in this process, taking
// turns in rounds of 200 calls. Each reports its mean time per call
// (µs/call), the CPU time per call of this process (host-cpu-µs) and of
// the plugin process (plugin-cpu-µs), and how many times per call a thread
// of each was put on a CPU (host-runs, plugin-runs): its wake-ups, and the
// rarer returns after preemption. plugin-cpu-beyond-inproc-µs is the CPU
// of host and plugin together per call beyond the call in process.
// "pipe" is the floor of any exchange between two processes: 64 bytes
// sent back and forth between two threads of this process over pipes
// (two wake-ups per round trip).
func BenchmarkRoundTripCost(b *testing.B) {
	const round = 200
	bk := softKeys(b, nil)
	ctx := context.Background()
	c := newClient(b, plugins.Config{Keys: bk.refs, Env: benchEnv(), Logger: quietLogger()})
	k, err := c.Key(ctx, bk.refs[0])
	if err != nil {
		b.Fatal(err)
	}
	pids := c.PIDs()
	if len(pids) != 1 {
		b.Fatalf("plugin processes: %v", pids)
	}
	bc := startBare(b, bk)
	bs := bc.stream(b, bk.refs[0])
	ping, stopPipe := pipePingPong(b, 64)
	defer stopPipe()
	local, err := keyset.Open(ctx, bk.refs)
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	name := plugins.KeyName(bk.refs[0])
	ps := peers(b, 64)
	type impl struct {
		name                   string
		pid                    string
		call                   func(peer []byte) error
		wall, hostCPU, plugCPU time.Duration
		hostRuns, plugRuns     int64
		n                      int
	}
	impls := []*impl{
		{name: "plugin", pid: strconv.Itoa(pids[0]), call: func(p []byte) error { _, err := k.ECDHContext(ctx, p); return err }},
		{name: "bare", pid: strconv.Itoa(bc.pc.ReattachConfig().Pid), call: func(p []byte) error { _, err := bs.ECDH(p); return err }},
		{name: "pipe", call: func([]byte) error { return ping() }},
		{name: "inproc", call: func(p []byte) error { _, err := local.ECDH(ctx, name, p); return err }},
	}
	run := func(im *impl, n int) {
		h0, hr0 := schedStat(b, "self")
		var p0 time.Duration
		var pr0 int64
		if im.pid != "" {
			p0, pr0 = schedStat(b, im.pid)
		}
		t0 := time.Now()
		for i := range n {
			if err := im.call(ps[i%len(ps)]); err != nil {
				b.Fatal(err)
			}
		}
		im.wall += time.Since(t0)
		h1, hr1 := schedStat(b, "self")
		im.hostCPU += h1 - h0
		im.hostRuns += hr1 - hr0
		if im.pid != "" {
			p1, pr1 := schedStat(b, im.pid)
			im.plugCPU += p1 - p0
			im.plugRuns += pr1 - pr0
		}
		im.n += n
	}
	for _, im := range impls { // warm up
		run(im, 50)
		*im = impl{name: im.name, pid: im.pid, call: im.call}
	}
	b.ResetTimer()
	for r := range b.N {
		for j := range impls {
			run(impls[(r+j)%len(impls)], round)
		}
	}
	b.StopTimer()
	perCall := func(im *impl, d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(im.n) / 1e3 }
	b.ReportMetric(perCall(impls[0], impls[0].hostCPU+impls[0].plugCPU)-perCall(impls[3], impls[3].hostCPU), "plugin-cpu-beyond-inproc-µs")
	b.ReportMetric(perCall(impls[1], impls[1].hostCPU+impls[1].plugCPU)-perCall(impls[3], impls[3].hostCPU), "bare-cpu-beyond-inproc-µs")
	for _, im := range impls {
		n := float64(im.n)
		b.ReportMetric(float64(im.wall.Nanoseconds())/n/1e3, im.name+"-µs/call")
		b.ReportMetric(float64(im.hostCPU.Nanoseconds())/n/1e3, im.name+"-host-cpu-µs")
		b.ReportMetric(float64(im.hostRuns)/n, im.name+"-host-runs")
		if im.pid != "" {
			b.ReportMetric(float64(im.plugCPU.Nanoseconds())/n/1e3, im.name+"-plugin-cpu-µs")
			b.ReportMetric(float64(im.plugRuns)/n, im.name+"-plugin-runs")
		}
	}
}

// pipePingPong starts a thread that echoes each message of size bytes it
// reads from one pipe into another, and returns a function that sends one
// and waits for its echo, and one that stops the thread.
func pipePingPong(b *testing.B, size int) (ping func() error, stop func()) {
	r1, w1, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		buf := make([]byte, size)
		for {
			// A pipe write of at most PIPE_BUF bytes is read whole.
			if _, err := syscall.Read(int(r1.Fd()), buf); err != nil || buf[0] == 0 {
				return
			}
			if _, err := syscall.Write(int(w2.Fd()), buf); err != nil {
				return
			}
		}
	}()
	msg := make([]byte, size)
	msg[0] = 1
	buf := make([]byte, size)
	ping = func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if _, err := syscall.Write(int(w1.Fd()), msg); err != nil {
			return err
		}
		_, err := syscall.Read(int(r2.Fd()), buf)
		return err
	}
	stop = func() {
		syscall.Write(int(w1.Fd()), []byte{0})
		<-done
		for _, f := range []*os.File{r1, w1, r2, w2} {
			f.Close()
		}
	}
	return ping, stop
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
