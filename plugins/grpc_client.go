package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/twoway-hsm/twoway-hsm/kem"
	kempluginv1 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v1"
)

// GRPCClient is the host side of the protocol: a Backend that calls one
// plugin process over gRPC. Errors wrap the same sentinels the plugin's
// Backend returned (see [Backend]), and a broken connection wraps
// [ErrUnavailable]. Most hosts use [Client], which adds process management
// on top; GRPCClient is for hosts that run go-plugin themselves.
type GRPCClient struct {
	client kempluginv1.KEMPluginClient

	// ECDH and Decapsulate go over one Session stream, opened on first use
	// and again after it breaks; unary calls serve plugins without it.
	sessMu    sync.Mutex
	sess      *session
	noSession atomic.Bool
}

// session returns the open Session stream, opening one if needed, or nil
// when the plugin has none.
func (c *GRPCClient) session() *session {
	if c.noSession.Load() {
		return nil
	}
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	if c.sess != nil {
		err := c.sess.broken()
		if err == nil {
			return c.sess
		}
		if errors.Is(err, errNoSession) {
			c.noSession.Store(true)
			return nil
		}
		c.sess = nil
	}
	s, err := openSession(c.client)
	if err != nil {
		return nil
	}
	c.sess = s
	return s
}

// callSession makes a call on the Session stream; ok is false when the
// plugin has none and the caller must use the unary call.
func (c *GRPCClient) callSession(ctx context.Context, op string, req *kempluginv1.SessionRequest) (result []byte, ok bool, err error) {
	s := c.session()
	if s == nil {
		return nil, false, nil
	}
	result, err = s.call(ctx, op, req)
	if errors.Is(err, errNoSession) {
		c.noSession.Store(true)
		return nil, false, nil
	}
	return result, true, err
}

// Close ends the Session stream, if one is open. The gRPC connection
// belongs to go-plugin.
func (c *GRPCClient) Close() {
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	if c.sess != nil {
		c.sess.close()
		c.sess = nil
	}
}

// Describe calls the Describe RPC.
func (c *GRPCClient) Describe(ctx context.Context) (*Description, error) {
	resp, err := c.client.Describe(ctx, &kempluginv1.DescribeRequest{})
	if err != nil {
		return nil, fromStatus(ctx, "describe", err)
	}
	d := &Description{Plugin: resp.GetPlugin()}
	for _, k := range resp.GetKeys() {
		if k.GetKemId() > 0xffff {
			return nil, fmt.Errorf("plugins: describe: key %q has KEM id %d, out of range", k.GetName(), k.GetKemId())
		}
		d.Keys = append(d.Keys, KeyInfo{
			Name:      k.GetName(),
			Backend:   k.GetBackend(),
			KEM:       kem.ID(k.GetKemId()),
			PublicKey: k.GetPublicKey(),
		})
	}
	return d, nil
}

// ECDH performs the ECDH call, on the Session stream when the plugin has
// one.
func (c *GRPCClient) ECDH(ctx context.Context, key string, peer []byte) ([]byte, error) {
	req := &kempluginv1.SessionRequest{Call: &kempluginv1.SessionRequest_Ecdh{Ecdh: &kempluginv1.ECDHRequest{Key: key, PeerPublicKey: peer}}}
	if dh, ok, err := c.callSession(ctx, "ecdh", req); ok {
		return dh, err
	}
	resp, err := c.client.ECDH(ctx, &kempluginv1.ECDHRequest{Key: key, PeerPublicKey: peer})
	if err != nil {
		return nil, fromStatus(ctx, "ecdh", err)
	}
	return resp.GetDh(), nil
}

// Decapsulate performs the Decapsulate call, on the Session stream when the
// plugin has one.
func (c *GRPCClient) Decapsulate(ctx context.Context, key string, enc []byte) ([]byte, error) {
	req := &kempluginv1.SessionRequest{Call: &kempluginv1.SessionRequest_Decapsulate{Decapsulate: &kempluginv1.DecapsulateRequest{Key: key, Enc: enc}}}
	if ss, ok, err := c.callSession(ctx, "decapsulate", req); ok {
		return ss, err
	}
	resp, err := c.client.Decapsulate(ctx, &kempluginv1.DecapsulateRequest{Key: key, Enc: enc})
	if err != nil {
		return nil, fromStatus(ctx, "decapsulate", err)
	}
	return resp.GetSharedSecret(), nil
}

// fromStatus maps a gRPC error back to this package's sentinels. The
// caller's own context comes first: a call it cancelled is reported as
// such even when the transport reports something else.
func fromStatus(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("plugins: %s: %w", op, cerr)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("plugins: %s: %w: %v", op, ErrUnavailable, err)
	}
	var sentinel error
	switch st.Code() {
	case codes.Unavailable:
		sentinel = ErrUnavailable
	case codes.Canceled:
		sentinel = context.Canceled
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	case codes.InvalidArgument:
		sentinel = kem.ErrInvalidPublicKey
	case codes.NotFound:
		sentinel = ErrUnknownKey
	case codes.PermissionDenied:
		sentinel = ErrAuth
	case codes.FailedPrecondition:
		sentinel = kem.ErrUnsupportedKEM
	default:
		sentinel = ErrBackend
	}
	msg := st.Message()
	if sentinel == ErrUnavailable {
		return fmt.Errorf("plugins: %s: %w: %s", op, sentinel, msg)
	}
	return &remoteError{op: op, sentinel: sentinel, msg: msg}
}

// remoteError is an error reported by the plugin: it prints the plugin's
// message and unwraps to the sentinel its status code stands for.
type remoteError struct {
	op       string
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return "plugins: " + e.op + ": plugin: " + e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// isUnavailable reports whether err means the plugin process is gone.
func isUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
