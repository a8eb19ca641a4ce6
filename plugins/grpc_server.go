package plugins

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

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
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
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
	case errors.Is(err, ErrAuth):
		code = codes.PermissionDenied
	case errors.Is(err, kem.ErrUnsupportedKEM):
		code = codes.FailedPrecondition
	}
	return status.Error(code, err.Error())
}

// maxIdleWorkers bounds the goroutines a Session stream keeps waiting for
// calls.
const maxIdleWorkers = 16

// Session implements the Session stream: each call runs on a goroutine of
// its own while it runs, through the unary handler of its kind, with its own
// context (the stream's, bounded by the call's deadline, cancelled by a
// Cancel message), and its answer is sent as soon as it is ready. The
// goroutines outlive their calls and take the next ones, so that a
// goroutine's stack grows to what a call needs once rather than at every
// call (a new goroutine starts small); up to maxIdleWorkers wait between
// calls, and all end with the stream.
func (s *GRPCServer) Session(stream kempluginv1.KEMPlugin_SessionServer) error {
	ctx := stream.Context()
	var (
		sendMu  sync.Mutex
		mu      sync.Mutex
		cancels = make(map[uint64]context.CancelFunc)
		wg      sync.WaitGroup
		calls   = make(chan func()) // unbuffered: a send succeeds only to an idle worker
		idle    atomic.Int32
	)
	defer func() {
		mu.Lock()
		for _, c := range cancels {
			c()
		}
		mu.Unlock()
		close(calls)
		wg.Wait()
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		id := req.GetId()
		if req.GetCancel() != nil {
			mu.Lock()
			if c, ok := cancels[id]; ok {
				c()
			}
			mu.Unlock()
			continue
		}
		var callCtx context.Context
		var cancel context.CancelFunc
		if d := req.GetDeadlineUnixNano(); d != 0 {
			callCtx, cancel = context.WithDeadline(ctx, time.Unix(0, d))
		} else {
			callCtx, cancel = context.WithCancel(ctx)
		}
		mu.Lock()
		cancels[id] = cancel
		mu.Unlock()
		call := func() {
			var result []byte
			var err error
			switch c := req.GetCall().(type) {
			case *kempluginv1.SessionRequest_Ecdh:
				var r *kempluginv1.ECDHResponse
				r, err = s.ECDH(callCtx, c.Ecdh)
				result = r.GetDh()
			case *kempluginv1.SessionRequest_Decapsulate:
				var r *kempluginv1.DecapsulateResponse
				r, err = s.Decapsulate(callCtx, c.Decapsulate)
				result = r.GetSharedSecret()
			default:
				err = status.Error(codes.InvalidArgument, "plugins: session: empty call")
			}
			mu.Lock()
			delete(cancels, id)
			mu.Unlock()
			cancel()
			resp := &kempluginv1.SessionResponse{Id: id, Result: result}
			if err != nil {
				st := status.Convert(err)
				resp.Code, resp.Message = uint32(st.Code()), st.Message()
			}
			sendMu.Lock()
			_ = stream.Send(resp) // a broken stream ends the Recv loop too
			sendMu.Unlock()
			clear(result)
		}
		select {
		case calls <- call:
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					call()
					// Past maxIdleWorkers idle ones, a worker ends.
					if idle.Add(1) > maxIdleWorkers {
						idle.Add(-1)
						return
					}
					next, ok := <-calls
					idle.Add(-1)
					if !ok {
						return
					}
					call = next
				}
			}()
		}
	}
}
