package plugins

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/twoway-hsm/twoway-hsm/kem"
	kempluginv1 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v1"
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
	out := make([]byte, len(peer))
	for i := range peer {
		out[i] = peer[len(peer)-1-i]
	}
	return out, nil
}

func (f *fakeBackend) Decapsulate(ctx context.Context, key string, enc []byte) ([]byte, error) {
	return f.ECDH(ctx, key, enc)
}

// noSessionServer is a plugin of before the Session stream. It counts the
// streams the host tries to open.
type noSessionServer struct {
	*GRPCServer
	opened *atomic.Int32
}

func (s noSessionServer) Session(kempluginv1.KEMPlugin_SessionServer) error {
	s.opened.Add(1)
	return status.Error(codes.Unimplemented, "no Session")
}

func serve(t *testing.T, srv kempluginv1.KEMPluginServer) *GRPCClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kempluginv1.RegisterKEMPluginServer(s, srv)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &GRPCClient{client: kempluginv1.NewKEMPluginClient(conn)}
	t.Cleanup(c.Close)
	return c
}

func TestSessionStream(t *testing.T) {
	b := &fakeBackend{}
	c := serve(t, &GRPCServer{Impl: b})
	ctx := context.Background()
	// Concurrent calls are matched with their own answers.
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			peer := []byte{byte(i), 1, 2}
			out, err := c.ECDH(ctx, "k", peer)
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
	if c.sess == nil || c.sess.broken() != nil {
		t.Fatal("calls did not use the session stream")
	}
	// A call in progress holds up no other: while one waits in the
	// backend, the next ones are answered.
	slowCtx, slowCancel := context.WithCancel(ctx)
	slowDone := make(chan error, 1)
	go func() {
		_, err := c.ECDH(slowCtx, "slow", []byte{1})
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
		if out, err := c.ECDH(fastCtx, "k", []byte{byte(i), 7}); err != nil || out[1] != byte(i) {
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
	b.cancelled.Store(0)
	// Errors keep their sentinels.
	if _, err := c.ECDH(ctx, "bad", []byte{1}); !errors.Is(err, kem.ErrInvalidPublicKey) {
		t.Fatalf("bad key: %v", err)
	}
	// A deadline ends the call promptly and cancels it in the plugin.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.ECDH(dctx, "slow", []byte{1}); !errors.Is(err, context.DeadlineExceeded) {
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
	if _, err := c.Decapsulate(cctx, "slow", []byte{1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	// The stream still serves calls.
	if out, err := c.ECDH(ctx, "k", []byte{1, 2}); err != nil || out[0] != 2 {
		t.Fatalf("after cancellations: %v", err)
	}
}

func TestSessionFallback(t *testing.T) {
	srv := noSessionServer{&GRPCServer{Impl: &fakeBackend{}}, new(atomic.Int32)}
	c := serve(t, srv)
	for range 3 {
		out, err := c.ECDH(context.Background(), "k", []byte{1, 2})
		if err != nil || out[0] != 2 {
			t.Fatalf("unary fallback: %v", err)
		}
	}
	if c.sess == nil || !errors.Is(c.sess.broken(), errNoSession) {
		t.Fatal("the client did not notice the plugin has no session stream")
	}
	if n := srv.opened.Load(); n != 1 {
		t.Fatalf("the client tried to open %d session streams, want 1", n)
	}
}

// TestSessionCallContextsReleased checks that every call's context is
// released when the call ends, with a deadline or without: one left
// registered with the stream's context would stay in memory until the
// stream ends, which is the plugin's lifetime.
func TestSessionCallContextsReleased(t *testing.T) {
	ctx := &countingCtx{done: make(chan struct{})}
	defer close(ctx.done)
	st := &fakeSessionStream{ctx: ctx, reqs: make(chan *kempluginv1.SessionRequest), resps: make(chan *kempluginv1.SessionResponse, 1)}
	served := make(chan error, 1)
	go func() { served <- (&GRPCServer{Impl: &fakeBackend{}}).Session(st) }()
	deadline := time.Now().Add(time.Minute).UnixNano()
	for i := range 20 {
		req := &kempluginv1.SessionRequest{Id: uint64(i + 1), Call: &kempluginv1.SessionRequest_Ecdh{Ecdh: &kempluginv1.ECDHRequest{Key: "k", PeerPublicKey: []byte{1, 2}}}}
		if i%2 == 0 {
			req.DeadlineUnixNano = deadline
		}
		st.reqs <- req
		// The call's context is released before its answer is sent.
		if r := <-st.resps; r.GetCode() != 0 || r.GetId() != req.Id {
			t.Fatalf("call %d: answer %v", req.Id, r)
		}
	}
	if n := ctx.waiting.Load(); n != 0 {
		t.Fatalf("%d call contexts are still registered with the stream's context after their calls ended", n)
	}
	close(st.reqs)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// countingCtx is a stream context that counts the contexts derived from it
// that wait for it to end (through its AfterFunc method, which package
// context uses for a parent of a type it does not know).
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

// fakeSessionStream is the plugin's side of a Session stream, driven by
// the test.
type fakeSessionStream struct {
	grpc.ServerStream // nil: not used by GRPCServer.Session
	ctx               context.Context
	reqs              chan *kempluginv1.SessionRequest
	resps             chan *kempluginv1.SessionResponse
}

func (f *fakeSessionStream) Context() context.Context { return f.ctx }

func (f *fakeSessionStream) Recv() (*kempluginv1.SessionRequest, error) {
	r, ok := <-f.reqs
	if !ok {
		return nil, io.EOF
	}
	return r, nil
}

func (f *fakeSessionStream) Send(r *kempluginv1.SessionResponse) error {
	f.resps <- r
	return nil
}

// TestSessionWorkers: calls that run at the same time each get a worker
// of their own; once they end, maxIdleWorkers of the workers wait for the
// next calls and the others end; when the stream ends, every call still
// running is cancelled and every worker ends.
func TestSessionWorkers(t *testing.T) {
	b := &fakeBackend{}
	st := &fakeSessionStream{ctx: context.Background(), reqs: make(chan *kempluginv1.SessionRequest), resps: make(chan *kempluginv1.SessionResponse, 100)}
	ss := newServerSession(&GRPCServer{Impl: b}, st)
	served := make(chan error, 1)
	go func() { served <- ss.serve() }()
	slow := func(id uint64) *kempluginv1.SessionRequest {
		return &kempluginv1.SessionRequest{Id: id, Call: &kempluginv1.SessionRequest_Ecdh{Ecdh: &kempluginv1.ECDHRequest{Key: "slow", PeerPublicKey: []byte{1}}}}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}
	const n = 2*maxIdleWorkers + 3
	for id := range uint64(n) {
		st.reqs <- slow(id + 1)
	}
	waitFor("every call runs in the backend at once", func() bool { return b.started.Load() == n })
	for id := range uint64(n) {
		st.reqs <- &kempluginv1.SessionRequest{Id: id + 1, Call: &kempluginv1.SessionRequest_Cancel{Cancel: &kempluginv1.Cancel{}}}
	}
	for range n {
		if r := <-st.resps; codes.Code(r.GetCode()) != codes.Canceled {
			t.Fatalf("cancelled call %d: code %v", r.GetId(), codes.Code(r.GetCode()))
		}
	}
	waitFor("the workers are idle", func() bool { return ss.idle.Load() == maxIdleWorkers })
	time.Sleep(20 * time.Millisecond)
	if idle := ss.idle.Load(); idle != maxIdleWorkers {
		t.Fatalf("%d idle workers, want %d", idle, maxIdleWorkers)
	}
	// A call after them is answered. (Its result is zeroed once
	// sent, so only its id and code are checked.)
	st.reqs <- &kempluginv1.SessionRequest{Id: 100, Call: &kempluginv1.SessionRequest_Ecdh{Ecdh: &kempluginv1.ECDHRequest{Key: "k", PeerPublicKey: []byte{1, 2}}}}
	if r := <-st.resps; r.GetId() != 100 || r.GetCode() != 0 {
		t.Fatalf("answer %v", r)
	}
	// The end of the stream cancels a call still running.
	st.reqs <- slow(101)
	waitFor("the last call runs in the backend", func() bool { return b.started.Load() == n+1 })
	close(st.reqs)
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end with its stream")
	}
	if got := b.cancelled.Load(); got != n+1 {
		t.Fatalf("%d calls cancelled in the backend, want %d", got, n+1)
	}
	if r := <-st.resps; r.GetId() != 101 || codes.Code(r.GetCode()) != codes.Canceled {
		t.Fatalf("the call running when the stream ended: %v", r)
	}
}
