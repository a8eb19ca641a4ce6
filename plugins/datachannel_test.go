//go:build unix

package plugins

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// fakeBackend answers ECDH with the peer reversed, blocks on the key
// "slow" until its context ends, and fails on the key "bad".
type fakeBackend struct{ started, cancelled atomic.Int32 }

func (f *fakeBackend) Describe(context.Context) (*Description, error) { return &Description{}, nil }

func (f *fakeBackend) ECDH(ctx context.Context, key string, peer []byte) ([]byte, error) {
	switch key {
	case "slow":
		f.started.Add(1)
		<-ctx.Done()
		f.cancelled.Add(1)
		return nil, ctx.Err()
	case "bad":
		return nil, kem.ErrInvalidPublicKey
	}
	if err := ctx.Err(); err != nil { // a deadline that reached the plugin already past
		return nil, err
	}
	out := make([]byte, len(peer))
	for i := range peer {
		out[i] = peer[len(peer)-1-i]
	}
	return out, nil
}

func (f *fakeBackend) Decapsulate(ctx context.Context, key string, enc []byte) ([]byte, error) {
	return f.ECDH(ctx, key, enc)
}

// Key indexes of testKeys.
const (
	keyK uint16 = iota
	keySlow
	keyBad
)

var testKeys = &Description{Keys: []KeyInfo{{Name: "k"}, {Name: "slow"}, {Name: "bad"}}}

// pair returns the two ends of a new data channel, the host's and the
// plugin's; whoever takes each over closes it.
func pair(t testing.TB) (host, plugin channelEnd) {
	t.Helper()
	host, plugin, err := newChannel()
	if err != nil {
		t.Fatal(err)
	}
	return host, plugin
}

// peerConn is an end of a channel as a connection, for a peer written by
// hand: it reads from the end's r and writes to its w, on Go's network
// poller.
type peerConn struct{ r, w *os.File }

// peer wraps end; it is closed when the test ends.
func peer(t testing.TB, end channelEnd) *peerConn {
	t.Helper()
	for _, fd := range []int{end.r, end.w} {
		if err := setNonblock(fd); err != nil {
			t.Fatal(err)
		}
	}
	c := &peerConn{os.NewFile(uintptr(end.r), "peer in"), os.NewFile(uintptr(end.w), "peer out")}
	t.Cleanup(func() { c.Close() })
	return c
}

func (c *peerConn) Read(b []byte) (int, error)        { return c.r.Read(b) }
func (c *peerConn) Write(b []byte) (int, error)       { return c.w.Write(b) }
func (c *peerConn) SetReadDeadline(t time.Time) error { return c.r.SetReadDeadline(t) }
func (c *peerConn) Close() error                      { return errors.Join(c.r.Close(), c.w.Close()) }

// server returns a dataServer serving b on end, with calls' contexts
// derived from ctx.
func server(t testing.TB, ctx context.Context, b Backend, end channelEnd) *dataServer {
	t.Helper()
	s, err := newDataServer(ctx, b, testKeys, end)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hostConn wraps the host's end of a channel; it is closed when the test
// ends.
func hostConn(t testing.TB, end channelEnd) *dataConn {
	t.Helper()
	d, err := newDataConn(end)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

// channel connects a host to a dataServer serving b, with calls' contexts
// derived from ctx. It returns the host's end and a channel that receives
// serve's result.
func channel(t *testing.T, ctx context.Context, b Backend) (*dataConn, *dataServer, <-chan error) {
	t.Helper()
	host, plug := pair(t)
	s := server(t, ctx, b, plug)
	served := make(chan error, 1)
	go func() { served <- s.serve() }()
	d := hostConn(t, host)
	t.Cleanup(func() {
		d.close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("the plugin's data channel did not end after the host closed it")
		}
	})
	return d, s, served
}

func callECDH(ctx context.Context, d *dataConn, key uint16, peer []byte) ([]byte, error) {
	return d.call(ctx, "ecdh", frameECDH, key, peer)
}

// TestDataChannel: concurrent calls are matched with their own answers; a
// call in progress holds up no other; errors keep their sentinels;
// deadlines and cancellations end calls at once and reach the plugin.
func TestDataChannel(t *testing.T) {
	b := &fakeBackend{}
	d, _, _ := channel(t, context.Background(), b)
	ctx := context.Background()
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			peer := []byte{byte(i), 1, 2}
			out, err := callECDH(ctx, d, keyK, peer)
			if err == nil && (len(out) != 3 || out[2] != byte(i)) {
				err = errors.New("answer of another call")
			}
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// A call in progress holds up no other: while one waits in the
	// backend, the next ones are answered.
	slowCtx, slowCancel := context.WithCancel(ctx)
	slowDone := make(chan error, 1)
	go func() {
		_, err := callECDH(slowCtx, d, keySlow, []byte{1})
		slowDone <- err
	}()
	for wait := time.Now().Add(5 * time.Second); b.started.Load() == 0; time.Sleep(time.Millisecond) {
		select {
		case err := <-slowDone:
			t.Fatalf("the slow call ended before it reached the backend: %v", err)
		default:
		}
		if time.Now().After(wait) {
			t.Fatal("the slow call never reached the backend")
		}
	}
	fastCtx, fastCancel := context.WithTimeout(ctx, 5*time.Second)
	defer fastCancel()
	for i := range 3 {
		if out, err := callECDH(fastCtx, d, keyK, []byte{byte(i), 7}); err != nil || out[1] != byte(i) {
			t.Fatalf("a call while another is in progress: %x, %v", out, err)
		}
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the slow call ended early: %v", err)
	default:
	}
	slowCancel()
	if err := <-slowDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("slow call: %v", err)
	}
	for wait := time.Now().Add(5 * time.Second); b.cancelled.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatal("the cancellation did not reach the plugin")
		}
	}
	b.cancelled.Store(0)
	// Errors keep their sentinels.
	if _, err := callECDH(ctx, d, keyBad, []byte{1}); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := callECDH(ctx, d, 7, []byte{1}); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key index out of range: %v", err)
	}
	if _, err := callECDH(ctx, d, keyK, make([]byte, maxRequestPayload+1)); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Fatalf("input too long: %v", err)
	}
	// A deadline later than a frame can carry (UnixNano's range, the year
	// 2262) goes as none, not as a date that has passed.
	for _, dl := range []time.Time{time.Unix(1<<62, 0), time.Unix(0, math.MaxInt64).Add(time.Nanosecond)} {
		fctx, cancel := context.WithDeadline(ctx, dl)
		if _, err := callECDH(fctx, d, keyK, []byte{1}); err != nil {
			t.Fatalf("a call with the deadline %v: %v", dl, err)
		}
		cancel()
	}
	// A deadline ends the call promptly and cancels it in the plugin.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := callECDH(dctx, d, keySlow, []byte{1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("slow call returned after %v", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for b.cancelled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if b.cancelled.Load() == 0 {
		t.Fatal("the plugin's call was not cancelled")
	}
	// An explicit cancellation too.
	cctx, ccancel := context.WithCancel(ctx)
	time.AfterFunc(20*time.Millisecond, ccancel)
	if _, err := d.call(cctx, "decapsulate", frameDecapsulate, keySlow, []byte{1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	// The channel still serves calls, Decapsulate too.
	if out, err := d.call(ctx, "decapsulate", frameDecapsulate, keyK, []byte{1, 2}); err != nil || out[0] != 2 {
		t.Fatalf("after cancellations: %v", err)
	}
	// Calls that wait while another leads, and give up, leave the lead
	// with the others: 20 slow calls with deadlines and 20 fast ones at
	// once all end, the slow ones at their deadlines.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, time.Duration(10+i)*time.Millisecond)
			defer cancel()
			key := keyK
			if i%2 == 0 {
				key = keySlow
			}
			_, err := callECDH(ctx, d, key, []byte{byte(i)})
			if key == keySlow && !errors.Is(err, context.DeadlineExceeded) || key == keyK && err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if _, err := callECDH(ctx, d, keyK, []byte{1}); err != nil {
		t.Fatalf("after the mixed calls: %v", err)
	}
	d.mu.Lock()
	left, abandoned, leader := len(d.pending), d.abandoned, d.leader
	d.mu.Unlock()
	if leader || left != abandoned {
		t.Fatalf("after every call ended: leader %v, %d pending calls, %d of them abandoned", leader, left, abandoned)
	}
}

// TestDataCallContextsReleased checks that every call's context is
// released when the call ends, with a deadline or without: one left
// registered with the parent context would stay in memory until the
// channel ends, which is the plugin's lifetime.
func TestDataCallContextsReleased(t *testing.T) {
	ctx := &countingCtx{done: make(chan struct{})}
	defer close(ctx.done)
	d, _, _ := channel(t, ctx, &fakeBackend{})
	for i := range 20 {
		cctx := context.Background()
		if i%2 == 0 {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(cctx, time.Minute)
			defer cancel()
		}
		if _, err := callECDH(cctx, d, keyK, []byte{1, 2}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// The call's context is released before its answer is sent.
	if n := ctx.waiting.Load(); n != 0 {
		t.Fatalf("%d call contexts are still registered with their parent after their calls ended", n)
	}
}

// countingCtx is a context that counts the contexts derived from it that
// wait for it to end (through its AfterFunc method, which package context
// uses for a parent of a type it does not know).
type countingCtx struct {
	done    chan struct{}
	waiting atomic.Int32
}

func (*countingCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *countingCtx) Done() <-chan struct{}     { return c.done }
func (*countingCtx) Value(any) any               { return nil }

func (c *countingCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

func (c *countingCtx) AfterFunc(func()) (stop func() bool) {
	c.waiting.Add(1)
	var once sync.Once
	return func() bool {
		once.Do(func() { c.waiting.Add(-1) })
		return true
	}
}

// rawHost is a host written by hand, to drive a dataServer frame by frame.
type rawHost struct {
	t   *testing.T
	end channelEnd // blocking
}

func (h rawHost) write(b []byte) {
	h.t.Helper()
	for len(b) > 0 {
		n, err := syscall.Write(h.end.w, b)
		if err != nil {
			h.t.Fatal(err)
		}
		b = b[n:]
	}
}

func (h rawHost) send(f frame, payload []byte) {
	h.t.Helper()
	f.n = len(payload)
	b := make([]byte, frameHeaderSize+len(payload))
	putHeader(b, f)
	copy(b[frameHeaderSize:], payload)
	h.write(b)
}

// read reads one answer, failing the test after 5 seconds.
func (h rawHost) read() (frame, []byte) {
	h.t.Helper()
	tv := syscall.NsecToTimeval(int64(5 * time.Second))
	syscall.SetsockoptTimeval(h.end.r, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	var hdr [frameHeaderSize]byte
	h.readFull(hdr[:])
	f, _, err := decodeResponse(hdr[:])
	if err != nil {
		h.t.Fatal(err)
	}
	p := make([]byte, f.n)
	h.readFull(p)
	return f, p
}

func (h rawHost) readFull(b []byte) {
	h.t.Helper()
	for len(b) > 0 {
		n, err := syscall.Read(h.end.r, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n == 0 {
			h.t.Fatalf("reading the plugin's answer: %d, %v", n, err)
		}
		b = b[n:]
	}
}

// rawServer starts a dataServer serving b for a rawHost.
func rawServer(t *testing.T, b Backend) (rawHost, *dataServer, <-chan error) {
	host, plug := pair(t)
	t.Cleanup(host.close)
	s := server(t, context.Background(), b, plug)
	served := make(chan error, 1)
	go func() { served <- s.serve() }()
	return rawHost{t, host}, s, served
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// TestDataWorkers: calls that run at the same time each get a worker of
// their own; once they end, maxIdleWorkers of the workers wait for the
// next calls and the others end; when the channel ends, every call still
// running is cancelled (and answered) and every worker ends.
func TestDataWorkers(t *testing.T) {
	b := &fakeBackend{}
	h, s, served := rawServer(t, b)
	const n = 2*maxIdleWorkers + 3
	for id := range uint64(n) {
		h.send(frame{kind: frameECDH, key: keySlow, id: id + 1}, []byte{1})
	}
	waitFor(t, "every call runs in the backend at once", func() bool { return b.started.Load() == n })
	for id := range uint64(n) {
		h.send(frame{kind: frameCancel, id: id + 1}, nil)
	}
	seen := map[uint64]bool{}
	for range n {
		f, _ := h.read()
		if f.kind != frameError || codes.Code(f.code) != codes.Canceled || seen[f.id] {
			t.Fatalf("cancelled call %d: kind %#x, code %v (answered before: %v)", f.id, f.kind, codes.Code(f.code), seen[f.id])
		}
		seen[f.id] = true
	}
	waitFor(t, "the workers are idle", func() bool { return s.idle.Load() == maxIdleWorkers })
	time.Sleep(20 * time.Millisecond)
	if idle := s.idle.Load(); idle != maxIdleWorkers {
		t.Fatalf("%d idle workers, want %d", idle, maxIdleWorkers)
	}
	// A call after them is answered, and a cancellation of a call that has
	// ended is ignored.
	h.send(frame{kind: frameCancel, id: 3}, nil)
	h.send(frame{kind: frameECDH, key: keyK, id: 100}, []byte{1, 2})
	if f, p := h.read(); f.id != 100 || f.kind != frameResult || string(p) != "\x02\x01" {
		t.Fatalf("answer %+v %x", f, p)
	}
	// The end of the channel cancels a call still running, which is still
	// answered (the host closed only its sending side).
	h.send(frame{kind: frameECDH, key: keySlow, id: 101}, []byte{1})
	waitFor(t, "the last call runs in the backend", func() bool { return b.started.Load() == n+1 })
	syscall.Shutdown(h.end.w, syscall.SHUT_WR)
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the data channel was not served to its end")
	}
	if got := b.cancelled.Load(); got != n+1 {
		t.Fatalf("%d calls cancelled in the backend, want %d", got, n+1)
	}
	if f, _ := h.read(); f.id != 101 || codes.Code(f.code) != codes.Canceled {
		t.Fatalf("the call running when the channel ended: %+v", f)
	}
	if s.idle.Load() != 0 {
		t.Fatalf("%d workers still idle after the end", s.idle.Load())
	}
}

// TestMisbehavingHost: a host that breaks the channel's rules cannot crash
// the plugin or make it hold unbounded memory: the plugin stops serving
// the channel (an error wrapping errProtocol) and cancels its calls, or
// refuses the one call.
func TestMisbehavingHost(t *testing.T) {
	hdr := func(f frame) []byte {
		b := make([]byte, frameHeaderSize)
		putHeader(b, f)
		return b
	}
	for name, bad := range map[string][]byte{
		"oversized":       withLength(frame{kind: frameECDH, id: 1}, 1<<31)[:frameHeaderSize],
		"largest length":  withLength(frame{kind: frameECDH, id: 1}, math.MaxUint32)[:frameHeaderSize],
		"just too long":   hdr(frame{kind: frameECDH, id: 1, n: maxRequestPayload + 1}),
		"unknown kind":    hdr(frame{kind: 9, id: 1}),
		"a response kind": hdr(frame{kind: frameResult, id: 1}),
		"id 0":            hdr(frame{kind: frameECDH, id: 0}),
		"a code":          hdr(frame{kind: frameECDH, id: 1, code: 3}),
		"cancel with key": hdr(frame{kind: frameCancel, id: 1, key: 1}),
		"garbage":         []byte("GET / HTTP/1.1\r\nHost: plugin\r\n\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			b := &fakeBackend{}
			h, _, served := rawServer(t, b)
			// A call running, to see that it is cancelled.
			h.send(frame{kind: frameECDH, key: keySlow, id: 5}, []byte{1})
			waitFor(t, "the call runs", func() bool { return b.started.Load() == 1 })
			h.write(bad)
			select {
			case err := <-served:
				if !errors.Is(err, errProtocol) {
					t.Fatalf("serve: %v; want a protocol violation", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the plugin kept serving a host that broke the protocol")
			}
			if b.cancelled.Load() != 1 {
				t.Fatal("the running call was not cancelled")
			}
		})
	}
	t.Run("duplicate id", func(t *testing.T) {
		b := &fakeBackend{}
		h, _, served := rawServer(t, b)
		h.send(frame{kind: frameECDH, key: keySlow, id: 5}, []byte{1})
		h.send(frame{kind: frameECDH, key: keySlow, id: 5}, []byte{1})
		if err := <-served; !errors.Is(err, errProtocol) {
			t.Fatalf("serve: %v; want a protocol violation", err)
		}
	})
	t.Run("too many calls", func(t *testing.T) {
		b := &fakeBackend{}
		h, _, served := rawServer(t, b)
		for id := range uint64(maxInFlight) {
			h.send(frame{kind: frameECDH, key: keySlow, id: id + 1}, []byte{1})
		}
		waitFor(t, "every call runs", func() bool { return b.started.Load() == maxInFlight })
		h.send(frame{kind: frameECDH, key: keyK, id: maxInFlight + 1}, []byte{1})
		if f, _ := h.read(); f.id != maxInFlight+1 || codes.Code(f.code) != codes.ResourceExhausted {
			t.Fatalf("a call beyond the bound: %+v", f)
		}
		syscall.Shutdown(h.end.w, syscall.SHUT_WR)
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	})
}

// fakePlugin is a plugin written by hand, to answer a host as the test
// wants.
type fakePlugin struct {
	t *testing.T
	c *peerConn
}

func (p fakePlugin) request() (frame, []byte) {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(p.c, hdr[:]); err != nil {
		p.t.Fatalf("fake plugin: %v", err)
	}
	f, _, err := decodeRequest(hdr[:])
	if err != nil {
		p.t.Fatalf("fake plugin: %v", err)
	}
	b := make([]byte, f.n)
	if _, err := io.ReadFull(p.c, b); err != nil {
		p.t.Fatalf("fake plugin: %v", err)
	}
	return f, b
}

func (p fakePlugin) answer(f frame, payload []byte) {
	p.t.Helper()
	f.n = len(payload)
	b := make([]byte, frameHeaderSize+len(payload))
	putHeader(b, f)
	copy(b[frameHeaderSize:], payload)
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("fake plugin: %v", err)
	}
}

// TestMisbehavingPlugin: a plugin that breaks the channel's rules cannot
// crash or hang the host: the call in flight fails at once with
// ErrUnavailable, and so does every later call on the channel (the client
// then restarts the process).
func TestMisbehavingPlugin(t *testing.T) {
	result := func(id uint64, n int) []byte {
		b := make([]byte, frameHeaderSize+n)
		putHeader(b, frame{kind: frameResult, id: id, n: n})
		return b
	}
	for name, tc := range map[string]func(id uint64) []byte{
		"oversized": func(id uint64) []byte { b := result(id, 0); b[3] = 0xff; return b },
		"largest length": func(id uint64) []byte {
			return withLength(frame{kind: frameResult, id: id}, math.MaxUint32)[:frameHeaderSize]
		},
		"result too long": func(id uint64) []byte { return result(id, maxResultSize+1) },
		"message too long": func(id uint64) []byte {
			return hdrOf(frame{kind: frameError, code: 13, id: id, n: maxResponsePayload + 1})
		},
		"unknown id":         func(id uint64) []byte { return result(id+1000, 32) },
		"garbage":            func(uint64) []byte { return []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n") },
		"unavailable code":   func(id uint64) []byte { return hdrOf(frame{kind: frameError, code: 14, id: id}) },
		"a request kind":     func(id uint64) []byte { return hdrOf(frame{kind: frameECDH, id: id}) },
		"a deadline":         func(id uint64) []byte { return hdrOf(frame{kind: frameResult, id: id, deadline: 1}) },
		"closed mid-frame":   func(id uint64) []byte { return result(id, 32)[:30] },
		"closed mid-header":  func(id uint64) []byte { return result(id, 32)[:10] },
		"closed (it exited)": func(uint64) []byte { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			host, plug := pair(t)
			d := hostConn(t, host)
			pc := peer(t, plug)
			p := fakePlugin{t, pc}
			errc := make(chan error, 1)
			go func() {
				_, err := callECDH(context.Background(), d, keyK, []byte{1, 2, 3})
				errc <- err
			}()
			f, _ := p.request()
			if b := tc(f.id); len(b) > 0 {
				if _, err := pc.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			if name[:6] == "closed" {
				pc.Close()
			}
			select {
			case err := <-errc:
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("call: %v; want ErrUnavailable", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the call hangs")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := callECDH(ctx, d, keyK, []byte{1}); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("a later call: %v; want ErrUnavailable", err)
			}
		})
	}
	t.Run("duplicate answer", func(t *testing.T) {
		host, plug := pair(t)
		d := hostConn(t, host)
		p := fakePlugin{t, peer(t, plug)}
		errc := make(chan error, 1)
		go func() {
			out, err := callECDH(context.Background(), d, keyK, []byte{1, 2, 3})
			if err == nil && string(out) != "abc" {
				err = errors.New("wrong answer")
			}
			errc <- err
		}()
		f, _ := p.request()
		p.answer(frame{kind: frameResult, id: f.id}, []byte("abc"))
		p.answer(frame{kind: frameResult, id: f.id}, []byte("abc"))
		if err := <-errc; err != nil {
			t.Fatalf("the first answer: %v", err)
		}
		// The second answer breaks the channel when it is read.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := callECDH(ctx, d, keyK, []byte{1}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("after a duplicate answer: %v; want ErrUnavailable", err)
		}
	})
	t.Run("silence", func(t *testing.T) {
		// A plugin that reads calls and never answers: each ends at its
		// deadline, and the plugin is told to cancel it.
		host, plug := pair(t)
		d := hostConn(t, host)
		p := fakePlugin{t, peer(t, plug)}
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			errc := make(chan error, 1)
			go func() { _, err := callECDH(ctx, d, keyK, []byte{1}); errc <- err }()
			f, _ := p.request()
			if f.deadline == 0 {
				t.Fatal("the call carries no deadline")
			}
			if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call: %v; want DeadlineExceeded", err)
			}
			cancel()
			if c, _ := p.request(); c.kind != frameCancel || c.id != f.id {
				t.Fatalf("after the deadline the plugin got %+v, want a cancellation of %d", c, f.id)
			}
		}
		// Answers that come after all are discarded.
		p.answer(frame{kind: frameError, code: byte(codes.Canceled), id: 1}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errc := make(chan error, 1)
		go func() { _, err := callECDH(ctx, d, keyK, []byte{1}); errc <- err }()
		f, _ := p.request()
		p.answer(frame{kind: frameResult, id: f.id}, []byte{9})
		if err := <-errc; err != nil {
			t.Fatalf("a call after late answers: %v", err)
		}
	})
	t.Run("not reading", func(t *testing.T) {
		// A plugin that reads nothing: once the socket's buffer is full,
		// calls still end at their deadlines, and once it has taken
		// nothing for the stall limit the channel breaks, so that the
		// client restarts the process rather than failing every call.
		d, payload := unreadChannel(t)
		start := time.Now()
		var full time.Time // when a call first found no room
		for i := 0; ; i++ {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("after %d calls in %v the channel has not broken", i, time.Since(start))
			}
			sent, err := timedCall(d, payload, 2*time.Millisecond)
			if errors.Is(err, ErrUnavailable) {
				if full.IsZero() {
					t.Fatalf("call %d: %v, before any call found the socket full", i, err)
				}
				if !strings.Contains(err.Error(), "has taken no request") {
					t.Errorf("call %d: %v; want the stall named", i, err)
				}
				// (full is when the test saw it, up to a wait slice after
				// the host did.)
				if waited := time.Since(full); waited < writeStallLimit/2 {
					t.Errorf("the channel broke %v after the socket filled, long before the stall limit (%v)", waited, writeStallLimit)
				}
				break
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call %d: %v", i, err)
			}
			if full.IsZero() && !sent {
				full = time.Now() // no room
			}
		}
		// Every later call fails at once.
		if _, err := callECDH(context.Background(), d, keyK, []byte{1}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a call after the break: %v, want ErrUnavailable", err)
		}
	})
	t.Run("not reading, one long call", func(t *testing.T) {
		// The same with a call whose deadline is far away: it ends at the
		// stall limit, not at its deadline.
		d, payload := unreadChannel(t)
		for i := 0; ; i++ { // fill the socket
			sent, err := timedCall(d, payload, time.Millisecond)
			if errors.Is(err, ErrUnavailable) {
				t.Fatalf("call %d: %v while filling the socket", i, err)
			}
			if !sent { // the socket is full
				break
			}
			if i > 100000 {
				t.Fatal("the socket never filled")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		_, err := callECDH(ctx, d, keyK, payload)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "has taken no request") {
			t.Fatalf("a call to a plugin that takes nothing: %v, want ErrUnavailable naming the stall", err)
		}
		if took := time.Since(start); took > 10*writeStallLimit {
			t.Errorf("the call took %v, the stall limit is %v", took, writeStallLimit)
		}
	})
}

// unreadChannel returns the host's end of a channel whose plugin reads
// nothing, with a stall limit of 300 ms for the test, and the largest
// request payload.
func unreadChannel(t *testing.T) (*dataConn, []byte) {
	t.Helper()
	l := writeStallLimit
	t.Cleanup(func() { writeStallLimit = l })
	writeStallLimit = 300 * time.Millisecond
	host, plug := pair(t)
	d := hostConn(t, host)
	peer(t, plug) // reads nothing
	return d, make([]byte, maxRequestPayload)
}

// timedCall makes an ECDH call of payload on d, whose plugin answers
// nothing, with a timeout, and reports whether its frame was sent (it is
// then among d's pending calls) and the call's error.
func timedCall(d *dataConn, payload []byte, timeout time.Duration) (sent bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	before := d.pendingLen()
	_, err = callECDH(ctx, d, keyK, payload)
	return d.pendingLen() != before, err
}

// pendingLen is how many calls d has sent and not had answered.
func (d *dataConn) pendingLen() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

func hdrOf(f frame) []byte {
	b := make([]byte, frameHeaderSize+f.n)
	putHeader(b, f)
	return b
}

// TestDataChannelNoLeaks: a channel's goroutines end with it, on both
// sides.
func TestDataChannelNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 5 {
		host, plug := pair(t)
		s := server(t, context.Background(), &fakeBackend{}, plug)
		served := make(chan error, 1)
		go func() { served <- s.serve() }()
		d, err := newDataConn(host)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				key := keyK
				if i%4 == 0 {
					key = keySlow
				}
				callECDH(ctx, d, key, []byte{1})
			})
		}
		wg.Wait()
		d.close()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the goroutines are gone", func() bool { return runtime.NumGoroutine() <= before })
}

// TestChannelOneWay: each socket of a channel carries frames one way. A
// side that writes where it should read gets EPIPE (on Linux), and one
// that reads where it should write reads the end, on both sides.
func TestChannelOneWay(t *testing.T) {
	host, plug := pair(t)
	defer host.close()
	defer plug.close()
	for _, tc := range []struct {
		name     string
		in, out  int // the socket the side reads, the one it writes
		peerRead int // the peer's socket its frames arrive on
	}{
		{"host", host.r, host.w, plug.r},
		{"plugin", plug.r, plug.w, host.r},
	} {
		if _, err := syscall.Write(tc.in, []byte{1}); err != syscall.EPIPE && runtime.GOOS == "linux" {
			t.Errorf("%s writing on the socket it reads: %v, want EPIPE", tc.name, err)
		}
		var b [1]byte
		if n, err := syscall.Read(tc.out, b[:]); n != 0 || err != nil {
			t.Errorf("%s reading the socket it writes: %d, %v; want the end (0, nil)", tc.name, n, err)
		}
		// The right way works.
		if _, err := syscall.Write(tc.out, []byte{7}); err != nil {
			t.Fatalf("%s writing: %v", tc.name, err)
		}
		if n, err := syscall.Read(tc.peerRead, b[:]); n != 1 || err != nil || b[0] != 7 {
			t.Fatalf("%s's peer reading: %d, %v, %x", tc.name, n, err, b)
		}
	}
}

// TestDataChannelFromEnv: a plugin takes over the two sockets the host
// names, and refuses anything else with an error that says what was
// wrong.
func TestDataChannelFromEnv(t *testing.T) {
	host, plug := pair(t)
	defer host.close()
	defer plug.close()
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	num := func(a, b int) string { return strconv.Itoa(a) + "," + strconv.Itoa(b) }
	for _, tc := range []struct{ value, want string }{
		{"3", "is not two different descriptor numbers"},
		{"3,3", "is not two different descriptor numbers"},
		{"x,4", "is not two different descriptor numbers"},
		{"1,4", "is not two different descriptor numbers"},
		{"3,4,5", "is not two different descriptor numbers"},
		{num(plug.r, p[1]), "is not a unix stream socket"},
		{num(p[0], plug.w), "is not a unix stream socket"},
	} {
		t.Setenv(DataFDEnv, tc.value)
		if _, err := dataChannelFromEnv(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v; want an error saying %q", DataFDEnv, tc.value, err, tc.want)
		}
	}
	os.Unsetenv(DataFDEnv)
	if _, err := dataChannelFromEnv(); err == nil || !strings.Contains(err.Error(), "is not set") {
		t.Errorf("unset: %v", err)
	}
	t.Setenv(DataFDEnv, num(plug.r, plug.w))
	end, err := dataChannelFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if end != plug {
		t.Fatalf("took over %+v, want %+v", end, plug)
	}
	if _, ok := os.LookupEnv(DataFDEnv); ok {
		t.Errorf("%s is still set", DataFDEnv)
	}
	for _, fd := range []int{plug.r, plug.w} {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("descriptor %d is not close-on-exec: %#x, %v", fd, fl, err)
		}
	}
}

// TestDataStopHostNotReading: a host that makes maxInFlight calls that
// run until the channel ends, then more, and never reads an answer: the
// reader refuses the calls beyond the bound itself, fills the answer
// socket and waits to write. The plugin's stop still ends serve, within
// endWriteTimeout or so.
func TestDataStopHostNotReading(t *testing.T) {
	h, s, served := rawServer(t, &fakeBackend{})
	var sent atomic.Int64
	go func() {
		b := make([]byte, frameHeaderSize+1)
		for id := uint64(1); id <= 8*maxInFlight; id++ {
			key := keyK // refused at once: the reader answers itself
			if id <= maxInFlight {
				key = keySlow // running until the channel ends
			}
			putHeader(b, frame{kind: frameECDH, key: key, id: id, n: 1})
			if _, err := syscall.Write(h.end.w, b); err != nil {
				return // shut down below
			}
			sent.Add(1)
		}
	}()
	// Until the plugin stops taking calls: it is stuck writing.
	for last := int64(-1); ; {
		time.Sleep(200 * time.Millisecond)
		n := sent.Load()
		if n == last || n == 8*maxInFlight {
			break
		}
		last = n
	}
	start := time.Now()
	s.stop()
	select {
	case <-served:
		t.Logf("%d calls sent; serve ended %v after stop", sent.Load(), time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * endWriteTimeout):
		t.Fatalf("serve did not end %v after stop (%d calls sent, none of their answers read)", 3*endWriteTimeout, sent.Load())
	}
	syscall.Shutdown(h.end.w, syscall.SHUT_WR)
}

// TestDataBoundHostNotReading: a host that sends calls and never reads
// the answers holds at most maxInFlight of the plugin's goroutines: the
// calls waiting to write their answers count towards the bound.
func TestDataBoundHostNotReading(t *testing.T) {
	before := runtime.NumGoroutine()
	h, _, _ := rawServer(t, &fakeBackend{})
	var sent atomic.Int64
	go func() {
		b := make([]byte, frameHeaderSize+1)
		for id := uint64(1); id <= 4*maxInFlight; id++ {
			putHeader(b, frame{kind: frameECDH, key: keyK, id: id, n: 1})
			if _, err := syscall.Write(h.end.w, b); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	t.Cleanup(func() { syscall.Shutdown(h.end.w, syscall.SHUT_WR) })
	for last := int64(-1); ; last = sent.Load() {
		time.Sleep(200 * time.Millisecond)
		if n := sent.Load(); n == last || n == 4*maxInFlight {
			break
		}
	}
	if n := runtime.NumGoroutine() - before; n > maxInFlight+32 {
		t.Fatalf("%d goroutines more after %d calls whose answers were not read; want at most about %d", n, sent.Load(), maxInFlight)
	}
}

// TestDataReadAllocs: reading a socket on the network poller allocates
// nothing (it is on every call's path, on both sides).
func TestDataReadAllocs(t *testing.T) {
	host, plug := pair(t)
	f, r, err := host.open("host end")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer sysClose(host.w)
	defer plug.close()
	msg, buf := make([]byte, 64), make([]byte, 128)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := syscall.Write(plug.w, msg); err != nil {
			t.Fatal(err)
		}
		if n, err := r.read(buf); n != len(msg) || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per read, want 0", allocs)
	}
}
