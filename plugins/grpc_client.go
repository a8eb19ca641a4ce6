package plugins

import (
	"context"
	"errors"
	"fmt"

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

// ECDH calls the ECDH RPC.
func (c *GRPCClient) ECDH(ctx context.Context, key string, peer []byte) ([]byte, error) {
	resp, err := c.client.ECDH(ctx, &kempluginv1.ECDHRequest{Key: key, PeerPublicKey: peer})
	if err != nil {
		return nil, fromStatus(ctx, "ecdh", err)
	}
	return resp.GetDh(), nil
}

// Decapsulate calls the Decapsulate RPC.
func (c *GRPCClient) Decapsulate(ctx context.Context, key string, enc []byte) ([]byte, error) {
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
