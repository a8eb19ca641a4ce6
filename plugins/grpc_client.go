package plugins

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/kem"
	kempluginv2 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v2"
)

// GRPCClient is the host side of the control protocol: Describe, Attest
// and Activate, over
// go-plugin's gRPC connection to one plugin process. The per-request calls
// go over the process's data channel, which [Client] sets up when it
// starts the process. Errors wrap the same sentinels the plugin's Backend
// returned (see [Backend]), and a broken connection wraps
// [ErrUnavailable].
type GRPCClient struct {
	client kempluginv2.KEMPluginClient
}

// Describe calls the Describe RPC.
func (c *GRPCClient) Describe(ctx context.Context) (*Description, error) {
	resp, err := c.client.Describe(ctx, &kempluginv2.DescribeRequest{})
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

// fromCode maps a code and message, from a gRPC call or a data channel
// answer, back to this package's sentinels. The caller's own context
// comes first: a call it cancelled is reported as such even when the
// plugin reports something else.
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
	case codes.Unimplemented:
		sentinel = attest.ErrNotAttestable
	default:
		sentinel = ErrBackend
	}
	if sentinel == ErrUnavailable {
		return fmt.Errorf("plugins: %s: %w: %s", op, sentinel, msg)
	}
	return &remoteError{op: op, sentinel: sentinel, msg: msg}
}

// remoteError is an error reported by the plugin: it prints the plugin's
// message and unwraps to the sentinel its code stands for.
type remoteError struct {
	op       string
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return "plugins: " + e.op + ": plugin: " + e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }
