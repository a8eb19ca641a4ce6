package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
	// and again after it breaks; unary calls serve plugins without it. A
	// stream that ended with errNoSession is kept as the record that the
	// plugin has none.
	sessMu sync.Mutex
	sess   *session
}

// session returns the open Session stream, opening one if needed, or nil
// when the plugin has none.
func (c *GRPCClient) session() (*session, error) {
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	if c.sess != nil {
		err := c.sess.broken()
		if err == nil {
			return c.sess, nil
		}
		if errors.Is(err, errNoSession) {
			return nil, nil
		}
	}
	s, err := openSession(c.client)
	if err != nil {
		return nil, err
	}
	c.sess = s
	return s, nil
}

// call makes a call on the Session stream, or through unary when the
// plugin has none.
func (c *GRPCClient) call(ctx context.Context, op string, req *kempluginv1.SessionRequest, unary func() ([]byte, error)) ([]byte, error) {
	s, err := c.session()
	if err != nil {
		return nil, fromStatus(ctx, op, err)
	}
	if s != nil {
		result, err := s.call(ctx, op, req)
		if !errors.Is(err, errNoSession) {
			return result, err
		}
	}
	result, err := unary()
	if err != nil {
		return nil, fromStatus(ctx, op, err)
	}
	return result, nil
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
	r := &kempluginv1.ECDHRequest{Key: key, PeerPublicKey: peer}
	return c.call(ctx, "ecdh", &kempluginv1.SessionRequest{Call: &kempluginv1.SessionRequest_Ecdh{Ecdh: r}}, func() ([]byte, error) {
		resp, err := c.client.ECDH(ctx, r)
		return resp.GetDh(), err
	})
}

// Decapsulate performs the Decapsulate call, on the Session stream when the
// plugin has one.
func (c *GRPCClient) Decapsulate(ctx context.Context, key string, enc []byte) ([]byte, error) {
	r := &kempluginv1.DecapsulateRequest{Key: key, Enc: enc}
	return c.call(ctx, "decapsulate", &kempluginv1.SessionRequest{Call: &kempluginv1.SessionRequest_Decapsulate{Decapsulate: r}}, func() ([]byte, error) {
		resp, err := c.client.Decapsulate(ctx, r)
		return resp.GetSharedSecret(), err
	})
}

// fromStatus maps an error of a gRPC call to this package's sentinels (see
// fromCode); an error that carries no gRPC status means the connection is
// gone.
func fromStatus(ctx context.Context, op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Unavailable, err.Error())
	}
	return fromCode(ctx, op, st.Code(), st.Message())
}

// fromCode maps a gRPC status code and message, from a unary call or a
// Session answer, back to this package's sentinels. The caller's own
// context comes first: a call it cancelled is reported as such even when
// the transport reports something else.
func fromCode(ctx context.Context, op string, code codes.Code, msg string) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("plugins: %s: %w", op, cerr)
	}
	var sentinel error
	switch code {
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
