package plugins

import (
	"context"
	"errors"
	"net"
	"path/filepath"
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
type fakeBackend struct{ cancelled atomic.Int32 }

func (f *fakeBackend) Describe(context.Context) (*Description, error) { return &Description{}, nil }

func (f *fakeBackend) ECDH(ctx context.Context, key string, peer []byte) ([]byte, error) {
	switch key {
	case "slow":
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

// noSessionServer is a plugin of before the Session stream.
type noSessionServer struct{ *GRPCServer }

func (noSessionServer) Session(kempluginv1.KEMPlugin_SessionServer) error {
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
	if c.sess == nil || c.noSession.Load() {
		t.Fatal("calls did not use the session stream")
	}
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
	c := serve(t, noSessionServer{&GRPCServer{Impl: &fakeBackend{}}})
	for range 3 {
		out, err := c.ECDH(context.Background(), "k", []byte{1, 2})
		if err != nil || out[0] != 2 {
			t.Fatalf("unary fallback: %v", err)
		}
	}
	if !c.noSession.Load() {
		t.Fatal("the client did not notice the plugin has no session stream")
	}
}
