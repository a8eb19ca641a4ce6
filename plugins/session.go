package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kempluginv1 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v1"
)

// errNoSession means the plugin does not implement the Session stream; the
// host then uses the unary calls.
var errNoSession = errors.New("plugins: plugin has no session stream")

// session is the host side of a Session stream: calls are sent with an id
// and matched with their answers by a receiving goroutine. It is safe for
// concurrent use.
type session struct {
	stream kempluginv1.KEMPlugin_SessionClient
	cancel context.CancelFunc
	sendMu sync.Mutex
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan *kempluginv1.SessionResponse
	err     error // set when the stream has ended; pending calls are failed with it
}

// openSession starts a Session stream on client.
func openSession(client kempluginv1.KEMPluginClient) (*session, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.Session(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &session{stream: stream, cancel: cancel, pending: make(map[uint64]chan *kempluginv1.SessionResponse)}
	go s.receive()
	return s, nil
}

// receive delivers answers to their calls until the stream ends, then
// fails the calls still waiting.
func (s *session) receive() {
	for {
		r, err := s.stream.Recv()
		if err != nil {
			if status.Code(err) == codes.Unimplemented {
				err = errNoSession
			}
			s.mu.Lock()
			s.err = err
			for id, ch := range s.pending {
				close(ch)
				delete(s.pending, id)
			}
			s.mu.Unlock()
			s.cancel()
			return
		}
		s.mu.Lock()
		ch, ok := s.pending[r.GetId()]
		delete(s.pending, r.GetId())
		s.mu.Unlock()
		if ok {
			ch <- r
		} else {
			clear(r.GetResult()) // an answer to a cancelled call
		}
	}
}

// broken reports the error that ended the stream, if it has ended.
func (s *session) broken() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// call sends req and waits for its answer or for ctx to end. Errors are
// those of the unary calls (see fromCode); errNoSession means the caller
// should use a unary call instead.
func (s *session) call(ctx context.Context, op string, req *kempluginv1.SessionRequest) ([]byte, error) {
	id := s.nextID.Add(1)
	req.Id = id
	if dl, ok := ctx.Deadline(); ok {
		req.DeadlineUnixNano = dl.UnixNano()
	}
	ch := make(chan *kempluginv1.SessionResponse, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, s.streamError(ctx, op, err)
	}
	s.pending[id] = ch
	s.mu.Unlock()

	// A failed Send ends the stream (grpc-go finishes it), and the
	// receiving goroutine then fails the call with the stream's real
	// error, which Send does not return (io.EOF).
	s.sendMu.Lock()
	_ = s.stream.Send(req)
	s.sendMu.Unlock()
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, s.streamError(ctx, op, s.broken())
		}
		if r.GetCode() != 0 {
			return nil, fromCode(ctx, op, codes.Code(r.GetCode()), r.GetMessage())
		}
		return r.GetResult(), nil
	case <-ctx.Done():
		s.forget(id)
		s.sendMu.Lock()
		_ = s.stream.Send(&kempluginv1.SessionRequest{Id: id, Call: &kempluginv1.SessionRequest_Cancel{Cancel: &kempluginv1.Cancel{}}})
		s.sendMu.Unlock()
		return nil, fmt.Errorf("plugins: %s: %w", op, ctx.Err())
	}
}

func (s *session) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// streamError maps the error that ended the stream for a call.
func (s *session) streamError(ctx context.Context, op string, err error) error {
	if errors.Is(err, errNoSession) {
		return errNoSession
	}
	return fromStatus(ctx, op, err)
}

// close ends the stream.
func (s *session) close() {
	s.sendMu.Lock()
	_ = s.stream.CloseSend()
	s.sendMu.Unlock()
	s.cancel()
}
