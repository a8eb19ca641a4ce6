package plugins

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// DataFDEnv is the environment variable through which a host tells its
// plugin the numbers of the inherited descriptors of the data channel (see
// frame.go): the socket the requests come on, a comma, and the socket the
// answers go on. The host always passes "3,4", the first two of
// exec.Cmd.ExtraFiles.
const DataFDEnv = "TWOWAY_HSM_DATA_FDS"

// maxIdleWorkers bounds the goroutines a data channel keeps waiting for
// calls.
const maxIdleWorkers = 16

// maxInFlight bounds the calls a plugin runs or has yet to answer at once
// for one host; a call beyond it is refused at once (ResourceExhausted),
// so that a host cannot make the plugin hold unbounded memory, not even
// by leaving its answers unread.
const maxInFlight = 1024

// endWriteTimeout bounds the answers to the calls still running when the
// host ends the channel.
const endWriteTimeout = time.Second

// dataChannelFromEnv takes over the data channel the host passed: it
// checks that the descriptors DataFDEnv names are unix stream sockets,
// makes them close-on-exec (nothing the backends run inherits them), and
// removes the variable.
func dataChannelFromEnv() (channelEnd, error) {
	none := channelEnd{-1, -1}
	v, ok := os.LookupEnv(DataFDEnv)
	if !ok {
		return none, fmt.Errorf("%s is not set: the host speaks another protocol version or did not pass the data channel", DataFDEnv)
	}
	os.Unsetenv(DataFDEnv)
	rs, ws, ok := strings.Cut(v, ",")
	r, err1 := strconv.Atoi(rs)
	w, err2 := strconv.Atoi(ws)
	if !ok || err1 != nil || err2 != nil || r < 3 || w < 3 || r == w {
		return none, fmt.Errorf("%s=%q is not two different descriptor numbers above 2, comma-separated", DataFDEnv, v)
	}
	for _, fd := range []int{r, w} {
		if err := checkDataSocket(fd); err != nil {
			return none, fmt.Errorf("descriptor %d (%s) is not a unix stream socket: %w", fd, DataFDEnv, err)
		}
		closeOnExec(fd)
	}
	return channelEnd{r: r, w: w}, nil
}

// dataServer serves a Backend on the plugin's end of a data channel: one
// goroutine reads frames (several per read under load; it waits on Go's
// network poller and reads with rawRead, see dataConn) and hands each call
// to a worker goroutine, which runs it with its own context (the host's
// deadline; cancelled by a frameCancel or the end of the channel) and
// writes its answer. Workers outlive their calls and take the next ones,
// so that a goroutine's stack grows to what a call needs once; up to
// maxIdleWorkers wait between calls.
type dataServer struct {
	b    Backend
	keys []string      // by key index: the names of the Describe snapshot
	in   *os.File      // the socket the requests come on, on the network poller
	r    *socketReader // in's
	out  int           // the socket the answers go on; not on the poller

	outDeadline atomic.Int64 // when end began: answers give up after endWriteTimeout (Unix ns; 0 before)

	ctx     context.Context // the parent of the calls' contexts
	stopped atomic.Bool     // stop was called

	wmu sync.Mutex // one answer written at a time

	mu      sync.Mutex
	running map[uint64]context.CancelFunc // the calls running, by id

	workers sync.WaitGroup
	calls   chan dataRequest // unbuffered: a send succeeds only to an idle worker
	idle    atomic.Int32     // workers waiting on calls

	rbuf [16 << 10]byte
}

// dataRequest is one call with its own context.
type dataRequest struct {
	f       frame
	payload []byte
	ctx     context.Context
	cancel  context.CancelFunc
}

// newDataServer serves b's keys of d on end, which it takes over, with
// calls' contexts derived from ctx. On an error it has closed end.
func newDataServer(ctx context.Context, b Backend, d *Description, end channelEnd) (*dataServer, error) {
	in, r, err := end.open("twoway-hsm data channel (requests)")
	if err != nil {
		return nil, fmt.Errorf("data channel: %w", err)
	}
	s := &dataServer{
		b:       b,
		ctx:     ctx,
		in:      in,
		r:       r,
		out:     end.w,
		running: make(map[uint64]context.CancelFunc),
		calls:   make(chan dataRequest),
	}
	for _, k := range d.Keys {
		s.keys = append(s.keys, k.Name)
	}
	return s, nil
}

// serve reads calls until the host closes the channel (nil) or breaks its
// rules (an error wrapping errProtocol), then cancels the calls still
// running, lets them answer (bounded by endWriteTimeout), waits for every
// worker and closes the channel.
func (s *dataServer) serve() error {
	defer s.end()
	head, tail := 0, 0
	for {
		for {
			f, size, err := decodeRequest(s.rbuf[head:tail])
			if err != nil {
				return err
			}
			if size == 0 {
				break
			}
			if err := s.handle(f, s.rbuf[head+frameHeaderSize:head+size]); err != nil {
				return err
			}
			clear(s.rbuf[head : head+size])
			head += size
		}
		if head == tail {
			head, tail = 0, 0
		} else if tail == len(s.rbuf) {
			tail = copy(s.rbuf[:], s.rbuf[head:tail])
			clear(s.rbuf[tail:])
			head = 0
		}
		n, err := s.r.read(s.rbuf[tail:])
		tail += n
		if err != nil {
			// The host closed its end, or the plugin is stopping.
			if err == io.EOF || s.stopped.Load() {
				return nil
			}
			return err
		}
	}
}

// stop ends the channel from the plugin's side (the plugin is shutting
// down): the read loop ends and serve cleans up.
func (s *dataServer) stop() {
	s.stopped.Store(true)
	// Answers waiting for room give up too, so that serve can end.
	s.outDeadline.CompareAndSwap(0, time.Now().Add(endWriteTimeout).UnixNano())
	_ = s.in.SetReadDeadline(time.Now())
}

// handle starts a call, cancels one, or refuses it.
func (s *dataServer) handle(f frame, payload []byte) error {
	if f.kind == frameCancel {
		s.mu.Lock()
		if c, ok := s.running[f.id]; ok {
			c()
		}
		s.mu.Unlock()
		return nil // a call already answered: nothing to do
	}
	s.mu.Lock()
	if _, dup := s.running[f.id]; dup {
		s.mu.Unlock()
		return fmt.Errorf("%w: call %d made twice", errProtocol, f.id)
	}
	if len(s.running) >= maxInFlight {
		s.mu.Unlock()
		s.answer(f.id, nil, codeError(codes.ResourceExhausted, fmt.Sprintf("plugins: the plugin runs %d calls already", maxInFlight)))
		return nil
	}
	r := dataRequest{f: f, payload: append([]byte(nil), payload...)}
	if f.deadline != 0 {
		r.ctx, r.cancel = context.WithDeadline(s.ctx, time.Unix(0, f.deadline))
	} else {
		r.ctx, r.cancel = context.WithCancel(s.ctx)
	}
	s.running[f.id] = r.cancel
	s.mu.Unlock()
	select {
	case s.calls <- r:
	default:
		s.workers.Add(1)
		go s.work(r)
	}
	return nil
}

// work runs r and then the calls it is handed, until more than
// maxIdleWorkers are idle or the channel ends.
func (s *dataServer) work(r dataRequest) {
	defer s.workers.Done()
	for {
		s.run(r)
		if s.idle.Add(1) > maxIdleWorkers {
			s.idle.Add(-1)
			return
		}
		next, ok := <-s.calls
		s.idle.Add(-1)
		if !ok {
			return
		}
		r = next
	}
}

// run runs one call, releases its context, and answers it.
func (s *dataServer) run(r dataRequest) {
	var out []byte
	var err error
	if int(r.f.key) >= len(s.keys) {
		err = fmt.Errorf("%w: the plugin serves %d keys, none with index %d", ErrUnknownKey, len(s.keys), r.f.key)
	} else if r.f.kind == frameECDH {
		out, err = s.b.ECDH(r.ctx, s.keys[r.f.key], r.payload)
	} else {
		out, err = s.b.Decapsulate(r.ctx, s.keys[r.f.key], r.payload)
	}
	clear(r.payload)
	r.cancel()
	if err == nil && len(out) > maxResultSize {
		err = fmt.Errorf("plugins: the backend returned %d bytes, more than a result can hold", len(out))
	}
	s.answer(r.f.id, out, err)
	clear(out)
	// Counted until answered, so that maxInFlight bounds the goroutines
	// of a host that does not read its answers too.
	s.mu.Lock()
	delete(s.running, r.f.id)
	s.mu.Unlock()
}

// statusError is an error with a code of its own.
type statusError struct {
	code codes.Code
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func codeError(code codes.Code, msg string) error { return &statusError{code, msg} }

// answer writes the answer to call id: out, or err's class and text. A
// write that fails means the channel is gone; the read loop ends too.
func (s *dataServer) answer(id uint64, out []byte, err error) {
	var buf [frameHeaderSize + maxResponsePayload]byte
	f := frame{kind: frameResult, id: id, n: len(out)}
	if err != nil {
		msg := truncateMessage(err.Error())
		f.kind, f.code, f.n = frameError, byte(toCode(err)), len(msg)
		copy(buf[frameHeaderSize:], msg)
	} else {
		copy(buf[frameHeaderSize:], out)
	}
	putHeader(buf[:], f)
	s.wmu.Lock()
	if err := s.write(buf[:frameHeaderSize+f.n]); err != nil {
		// Gone, or not reading; a frame cut short would make every
		// later one misread: the host is told the channel is over.
		sysShutdown(s.out)
	}
	s.wmu.Unlock()
	clear(buf[frameHeaderSize:])
}

// end cancels the calls still running, waits for the workers (their
// answers bounded by endWriteTimeout) and closes the channel.
func (s *dataServer) end() {
	s.mu.Lock()
	for _, c := range s.running {
		c()
	}
	s.mu.Unlock()
	s.outDeadline.CompareAndSwap(0, time.Now().Add(endWriteTimeout).UnixNano())
	close(s.calls)
	s.workers.Wait()
	s.in.Close()
	sysClose(s.out)
}

// write writes b whole to the host. While the host's socket is full it
// waits, until end's deadline once the channel is ending.
func (s *dataServer) write(b []byte) error {
	_, err := writeAll(s.out, b, func() bool {
		dl := s.outDeadline.Load()
		return dl != 0 && time.Now().UnixNano() >= dl
	})
	return err
}
