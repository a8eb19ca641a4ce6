package plugins

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/twoway-hsm/twoway-hsm/kem"
	kempluginv1 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v1"
)

// GRPCServer serves a Backend as the KEMPlugin gRPC service, on the plugin
// side. It passes each call's context (with the host's deadline) to the
// Backend and turns Backend errors into gRPC status codes that
// [GRPCClient] turns back into the same sentinel errors.
type GRPCServer struct {
	kempluginv1.UnimplementedKEMPluginServer
	// Impl is the Backend served.
	Impl Backend
}

// Describe implements the Describe RPC.
func (s *GRPCServer) Describe(ctx context.Context, _ *kempluginv1.DescribeRequest) (*kempluginv1.DescribeResponse, error) {
	d, err := s.Impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kempluginv1.DescribeResponse{Plugin: d.Plugin}
	for _, k := range d.Keys {
		resp.Keys = append(resp.Keys, &kempluginv1.KeyInfo{
			Name:      k.Name,
			Backend:   k.Backend,
			KemId:     uint32(k.KEM),
			PublicKey: k.PublicKey,
		})
	}
	return resp, nil
}

// ECDH implements the ECDH RPC.
func (s *GRPCServer) ECDH(ctx context.Context, req *kempluginv1.ECDHRequest) (*kempluginv1.ECDHResponse, error) {
	dh, err := s.Impl.ECDH(ctx, req.GetKey(), req.GetPeerPublicKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kempluginv1.ECDHResponse{Dh: dh}, nil
}

// Decapsulate implements the Decapsulate RPC.
func (s *GRPCServer) Decapsulate(ctx context.Context, req *kempluginv1.DecapsulateRequest) (*kempluginv1.DecapsulateResponse, error) {
	ss, err := s.Impl.Decapsulate(ctx, req.GetKey(), req.GetEnc())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kempluginv1.DecapsulateResponse{SharedSecret: ss}, nil
}

// toStatus maps a Backend error to a gRPC status. The message is the
// error's text, which backends keep free of secrets. codes.Unavailable is
// never used here: on the host it means the plugin process is gone.
func toStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, kem.ErrInvalidPublicKey):
		code = codes.InvalidArgument
	case errors.Is(err, ErrUnknownKey):
		code = codes.NotFound
	case errors.Is(err, kem.ErrUnsupportedKEM):
		code = codes.FailedPrecondition
	}
	return status.Error(code, err.Error())
}
