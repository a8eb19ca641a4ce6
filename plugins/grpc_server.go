package plugins

import (
	"context"
	"errors"

	grpcstatus "google.golang.org/grpc/status"

	"google.golang.org/grpc/codes"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/kem"
	kempluginv2 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v2"
)

// GRPCServer serves a Backend's Describe (and, for a Backend that is an
// [Attester], Attest and Activate) as the KEMPlugin gRPC service, on
// the plugin side; the per-request calls go over the data channel (see
// [Serve]). It turns Backend errors into gRPC status codes that
// [GRPCClient] turns back into the same sentinel errors.
type GRPCServer struct {
	kempluginv2.UnimplementedKEMPluginServer
	// Impl is the Backend served.
	Impl Backend
}

// Describe implements the Describe RPC.
func (s *GRPCServer) Describe(ctx context.Context, _ *kempluginv2.DescribeRequest) (*kempluginv2.DescribeResponse, error) {
	d, err := s.Impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kempluginv2.DescribeResponse{Plugin: d.Plugin}
	for _, k := range d.Keys {
		resp.Keys = append(resp.Keys, &kempluginv2.KeyInfo{
			Name:      k.Name,
			Backend:   k.Backend,
			KemId:     uint32(k.KEM),
			PublicKey: k.PublicKey,
		})
	}
	return resp, nil
}

// toStatus maps a Backend error to a gRPC status (see toCode). The message
// is the error's text, which backends keep free of secrets.
func toStatus(err error) error {
	if st, ok := grpcstatus.FromError(err); ok && st.Code() != codes.Unknown && st.Code() != codes.Unavailable {
		return err
	}
	return grpcstatus.Error(toCode(err), err.Error())
}

// toCode maps a Backend error to the code that crosses the boundary, on
// gRPC and on the data channel, and that fromCode turns back into the
// same sentinel. codes.Unavailable and codes.OK are never returned:
// Unavailable means, on the host, that the plugin process is gone.
func toCode(err error) codes.Code {
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	if st, ok := grpcstatus.FromError(err); ok {
		if c := st.Code(); c != codes.OK && c != codes.Unknown && c != codes.Unavailable && c <= codes.Unauthenticated {
			return c
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, kem.ErrInvalidPublicKey):
		return codes.InvalidArgument
	case errors.Is(err, ErrUnknownKey):
		return codes.NotFound
	case errors.Is(err, ErrAuth):
		return codes.PermissionDenied
	case errors.Is(err, kem.ErrUnsupportedKEM):
		return codes.FailedPrecondition
	case errors.Is(err, attest.ErrNotAttestable):
		return codes.Unimplemented
	}
	return codes.Internal
}
