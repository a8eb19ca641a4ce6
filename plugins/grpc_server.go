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
	return newServerSession(s, stream).serve()
}

// serverSession is the plugin side of one Session stream (see
// GRPCServer.Session; the host side is session).
type serverSession struct {
	srv    *GRPCServer
	stream kempluginv1.KEMPlugin_SessionServer
	sendMu sync.Mutex // one Send at a time

	mu      sync.Mutex
	cancels map[uint64]context.CancelFunc // of the calls running, by id

	workers sync.WaitGroup
	calls   chan sessionCall // unbuffered: a send succeeds only to an idle worker
	idle    atomic.Int32     // workers waiting on calls
}

func newServerSession(srv *GRPCServer, stream kempluginv1.KEMPlugin_SessionServer) *serverSession {
	return &serverSession{
		srv:     srv,
		stream:  stream,
		cancels: make(map[uint64]context.CancelFunc),
		calls:   make(chan sessionCall),
	}
}

// sessionCall is one call of a Session stream with its own context.
type sessionCall struct {
	req    *kempluginv1.SessionRequest
	ctx    context.Context
	cancel context.CancelFunc
}

// serve receives calls and cancellations until the stream ends, then
// cancels the calls still running and waits for the workers to end.
func (ss *serverSession) serve() error {
	defer ss.end()
	ctx := ss.stream.Context()
	for {
		req, err := ss.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if req.GetCancel() != nil {
			ss.cancelCall(req.GetId())
			continue
		}
		ss.dispatch(ss.begin(ctx, req))
	}
}

// cancelCall cancels the running call id, if there is one.
func (ss *serverSession) cancelCall(id uint64) {
	ss.mu.Lock()
	if c, ok := ss.cancels[id]; ok {
		c()
	}
	ss.mu.Unlock()
}

// begin gives req its context, derived from the stream's ctx and bounded
// by the call's deadline, and registers it for cancellation.
func (ss *serverSession) begin(ctx context.Context, req *kempluginv1.SessionRequest) sessionCall {
	c := sessionCall{req: req}
	if d := req.GetDeadlineUnixNano(); d != 0 {
		c.ctx, c.cancel = context.WithDeadline(ctx, time.Unix(0, d))
	} else {
		c.ctx, c.cancel = context.WithCancel(ctx)
	}
	ss.mu.Lock()
	ss.cancels[req.GetId()] = c.cancel
	ss.mu.Unlock()
	return c
}

// dispatch hands c to an idle worker, or to a new one if none is idle.
func (ss *serverSession) dispatch(c sessionCall) {
	select {
	case ss.calls <- c:
	default:
		ss.workers.Add(1)
		go ss.work(c)
	}
}

// work runs c and then the calls it is handed, until more than
// maxIdleWorkers are idle or the stream ends.
func (ss *serverSession) work(c sessionCall) {
	defer ss.workers.Done()
	for {
		ss.run(c)
		// Past maxIdleWorkers idle ones, a worker ends.
		if ss.idle.Add(1) > maxIdleWorkers {
			ss.idle.Add(-1)
			return
		}
		next, ok := <-ss.calls
		ss.idle.Add(-1)
		if !ok {
			return
		}
		c = next
	}
}

// run runs one call through the unary handler of its kind, releases its
// context, and sends its answer.
func (ss *serverSession) run(c sessionCall) {
	id := c.req.GetId()
	var result []byte
	var err error
	switch call := c.req.GetCall().(type) {
	case *kempluginv1.SessionRequest_Ecdh:
		var r *kempluginv1.ECDHResponse
		r, err = ss.srv.ECDH(c.ctx, call.Ecdh)
		result = r.GetDh()
	case *kempluginv1.SessionRequest_Decapsulate:
		var r *kempluginv1.DecapsulateResponse
		r, err = ss.srv.Decapsulate(c.ctx, call.Decapsulate)
		result = r.GetSharedSecret()
	default:
		err = status.Error(codes.InvalidArgument, "plugins: session: empty call")
	}
	ss.mu.Lock()
	delete(ss.cancels, id)
	ss.mu.Unlock()
	c.cancel()
	resp := &kempluginv1.SessionResponse{Id: id, Result: result}
	if err != nil {
		st := status.Convert(err)
		resp.Code, resp.Message = uint32(st.Code()), st.Message()
	}
	ss.sendMu.Lock()
	_ = ss.stream.Send(resp) // a broken stream ends the Recv loop too
	ss.sendMu.Unlock()
	clear(result)
}

// end cancels the calls still running and waits for the workers to end.
func (ss *serverSession) end() {
	ss.mu.Lock()
	for _, c := range ss.cancels {
		c()
	}
	ss.mu.Unlock()
	close(ss.calls)
	ss.workers.Wait()
}
