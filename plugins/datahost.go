package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// dataConn is the host's end of a data channel (see frame.go). It is safe
// for concurrent use.
//
// There is no receiving goroutine. A caller writes its request frame
// itself and then waits; one waiting caller at a time, the leader, reads
// the answers for everyone and hands the other callers theirs. When its
// own answer has come, or its context has ended, it passes the lead to
// another waiting caller. The leader waits on Go's network poller, and
// both ends make their read(2) and write(2) as raw system calls (rawRead,
// rawWrite): the sockets are nonblocking, so no call blocks, and a call
// through the scheduler's system-call path would wake its monitor thread
// (sysmon) whenever that sleeps, which on an idle process is every call.
// Only the socket the answers come on is on the poller, and it carries
// nothing the other way, so that the plugin's reading a request wakes
// nothing here. A call made while the host is otherwise idle therefore
// costs one thread wake-up on this side: the thread parked in the poller
// wakes with the answer and runs its caller. (The README's Performance
// section has the numbers of the designs measured; BenchmarkRoundTripCost
// counts the thread runs per call.)
type dataConn struct {
	rfd int           // the socket the answers come on; on Go's network poller through f
	wfd int           // the socket the requests go on; not on the poller
	f   *os.File      // owns rfd; its read deadline wakes the leader (wakeLeader)
	r   *socketReader // f's, the leader's

	wsem chan struct{} // one writer at a time; a channel so that waiting honours contexts
	// When a frame first found the request socket full, if no frame has
	// been sent whole since (zero otherwise); guarded by wsem. See
	// writeStallLimit.
	noRoomSince time.Time
	stallLimit  time.Duration // writeStallLimit when the channel was made

	mu        sync.Mutex
	pending   map[uint64]*dataCall // calls sent and not yet answered, abandoned ones included
	abandoned int                  // calls in pending whose caller has gone
	nextID    uint64
	leader    bool
	busy      int   // goroutines inside system calls on the sockets (the leader, a writer)
	err       error // why the channel ended; nil while it works
	closed    bool  // close was called; the descriptors go when busy drops to 0
	fdsClosed bool
	// The callers waiting on their calls' done for the answer or the lead,
	// oldest first: promoteLocked offers the lead to the first.
	waitHead, waitTail *dataCall

	// The leader's read buffer (only the leader touches it).
	rbuf  [16 << 10]byte
	rhead int // start of the unparsed bytes
	rtail int // end of the bytes read
}

// dataCall is one call on a dataConn.
type dataCall struct {
	id        uint64
	done      chan struct{} // signalled (capacity 1) when answered, or offered the lead
	abandoned bool          // its caller has gone; the answer is discarded
	finished  bool
	code      byte
	result    []byte // the result, or the error's text

	queued     bool // among the waiting callers (dataConn.waitHead)
	prev, next *dataCall
}

// maxAbandoned bounds the calls whose callers gave up while the plugin has
// not answered them yet: a plugin that leaves that many unanswered is
// treated as gone.
const maxAbandoned = 4096

// cancelWriteTimeout bounds the wait to send a cancellation, so that a
// caller whose context has ended returns at once even when the plugin is
// slow to read (the frame's deadline still reaches it).
const cancelWriteTimeout = 20 * time.Millisecond

// writeStallLimit is how long the host waits for a plugin that takes no
// request. A plugin reads its requests as they come, whatever its backend
// is doing, so a request socket that has been full that long, with no
// frame sent whole since across the calls that tried, means a plugin that
// has stopped: the channel breaks (ErrUnavailable), and the client retires
// the process and starts another, rather than every later call failing at
// its deadline. A variable for the tests.
var writeStallLimit = 5 * time.Second

// lastDeadline is the latest deadline a frame can carry (UnixNano's range);
// calls with a later one are sent without a deadline.
var lastDeadline = time.Unix(0, math.MaxInt64)

// newDataConn takes over end, the host's end of a data channel; on an
// error it has closed it.
func newDataConn(end channelEnd) (*dataConn, error) {
	f, r, err := end.open("twoway-hsm data channel (answers)")
	if err != nil {
		return nil, err
	}
	return &dataConn{
		rfd:        end.r,
		wfd:        end.w,
		f:          f,
		r:          r,
		wsem:       make(chan struct{}, 1),
		stallLimit: writeStallLimit,
		pending:    make(map[uint64]*dataCall),
	}, nil
}

// errDataClosed is the error of calls on a dataConn that was closed.
var errDataClosed = errors.New("the data channel was closed")

// call sends a request of kind for the key with that index and waits for
// its answer or for ctx to end. Errors are this package's sentinels (see
// fromCode); a broken channel wraps ErrUnavailable. The caller owns the
// result.
func (d *dataConn) call(ctx context.Context, op string, kind byte, key uint16, payload []byte) ([]byte, error) {
	if len(payload) > maxRequestPayload {
		return nil, fmt.Errorf("plugins: %s: %w: an input of %d bytes (at most %d)", op, kem.ErrInvalidPublicKey, len(payload), maxRequestPayload)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("plugins: %s: %w", op, err)
	}
	c := &dataCall{done: make(chan struct{}, 1)}
	d.mu.Lock()
	if d.err != nil {
		err := d.err
		d.mu.Unlock()
		return nil, unavailable(op, err)
	}
	d.nextID++
	c.id = d.nextID
	d.pending[c.id] = c
	d.mu.Unlock()

	var hdr [frameHeaderSize]byte
	f := frame{kind: kind, key: key, id: c.id, n: len(payload)}
	if dl, ok := ctx.Deadline(); ok && dl.Before(lastDeadline) {
		f.deadline = max(dl.UnixNano(), 1) // 0 is no deadline
	}
	putHeader(hdr[:], f)
	sent, err := d.send(ctx, hdr[:], payload)
	if !sent {
		d.mu.Lock()
		delete(d.pending, c.id)
		d.mu.Unlock()
		if cerr := ctx.Err(); cerr != nil && err == nil {
			return nil, fmt.Errorf("plugins: %s: %w", op, cerr)
		}
		return nil, unavailable(op, err)
	}
	return d.wait(ctx, op, c)
}

// unavailable is the error of a call on a broken channel.
func unavailable(op string, err error) error {
	return fmt.Errorf("plugins: %s: %w: %w", op, ErrUnavailable, err)
}

// wait waits for c's answer, leading when no one else does.
func (d *dataConn) wait(ctx context.Context, op string, c *dataCall) ([]byte, error) {
	for {
		d.mu.Lock()
		d.unqueueLocked(c)
		if c.finished {
			d.mu.Unlock()
			if c.code != 0 {
				return nil, fromCode(ctx, op, codes.Code(c.code), string(c.result))
			}
			return c.result, nil
		}
		if d.err != nil {
			err := d.err
			d.mu.Unlock()
			return nil, unavailable(op, err)
		}
		if cerr := ctxErr(ctx); cerr != nil {
			c.abandoned = true
			d.abandoned++
			if d.abandoned > maxAbandoned {
				d.breakLocked(fmt.Errorf("%w: the plugin leaves %d calls unanswered", errProtocol, d.abandoned))
			} else {
				d.promoteLocked()
			}
			d.mu.Unlock()
			d.cancel(c.id)
			return nil, fmt.Errorf("plugins: %s: %w", op, cerr)
		}
		if !d.leader {
			d.leader = true
			d.busy++
			d.mu.Unlock()
			d.lead(ctx, c)
			continue
		}
		d.queueLocked(c)
		d.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
		}
	}
}

// lead reads and delivers answers until c's has come, ctx ends or the
// channel breaks, then passes the lead on.
func (d *dataConn) lead(ctx context.Context, c *dataCall) {
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, d.wakeLeader)
		defer stop()
	}
	var err error
	for {
		if err = d.deliver(); err != nil {
			break
		}
		d.mu.Lock()
		stop := c.finished || d.err != nil
		d.mu.Unlock()
		if stop || ctxErr(ctx) != nil {
			break
		}
		if d.rtail == len(d.rbuf) { // compact (deliver leaves less than a frame)
			d.rtail = copy(d.rbuf[:], d.rbuf[d.rhead:d.rtail])
			clear(d.rbuf[d.rtail:])
			d.rhead = 0
		}
		n, rerr := d.r.read(d.rbuf[d.rtail:])
		if n > 0 {
			d.rtail += n
			continue
		}
		switch {
		case rerr == io.EOF:
			err = errors.New("the plugin closed the data channel")
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			// wakeLeader: a context ended. Cleared before the loop
			// checks the contexts again, so that no wake-up is lost.
			_ = d.f.SetReadDeadline(time.Time{})
		default:
			err = fmt.Errorf("reading from the plugin: %w", rerr)
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		// What is left in the buffer may hold answers (secrets) that
		// will never be delivered.
		clear(d.rbuf[:])
		d.rhead, d.rtail = 0, 0
	}
	d.mu.Lock()
	if err != nil {
		d.breakLocked(err)
	}
	d.leader = false
	d.promoteLocked()
	d.leaveLocked()
	d.mu.Unlock()
}

// deliver hands out the answers in the read buffer.
func (d *dataConn) deliver() error {
	for {
		b := d.rbuf[d.rhead:d.rtail]
		f, size, err := decodeResponse(b)
		if err != nil {
			return err
		}
		if size == 0 {
			if d.rhead == d.rtail {
				d.rhead, d.rtail = 0, 0
			}
			return nil
		}
		payload := b[frameHeaderSize:size]
		d.mu.Lock()
		c, ok := d.pending[f.id]
		if !ok {
			d.mu.Unlock()
			clear(payload)
			if f.id > d.lastID() {
				return fmt.Errorf("%w: an answer to call %d, which was never made", errProtocol, f.id)
			}
			return fmt.Errorf("%w: a second answer to call %d", errProtocol, f.id)
		}
		delete(d.pending, f.id)
		if c.abandoned {
			d.abandoned--
		} else {
			// Out of the queue at once: the lead is never offered to a
			// caller that has its answer and will not lead.
			d.unqueueLocked(c)
			c.finished = true
			c.code = f.code // 0 for frameResult, never 0 for frameError
			c.result = append([]byte(nil), payload...)
			select {
			case c.done <- struct{}{}:
			default:
			}
		}
		d.mu.Unlock()
		clear(payload) // it may be a secret
		d.rhead += size
	}
}

// lastID returns the id of the last call made.
func (d *dataConn) lastID() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nextID
}

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

// wakeLeader makes the leader's wait return (a deadline in the past; the
// leader clears it). Once the channel is closed it does nothing.
func (d *dataConn) wakeLeader() { _ = d.f.SetReadDeadline(longAgo) }

// ctxErr is ctx.Err, or DeadlineExceeded once ctx's deadline has passed
// even if its timer has not fired yet (which would make a leader spin).
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// promoteLocked offers the lead to the longest waiting caller when no one
// leads. (One that finds a leader when it wakes queues again; one whose
// context has ended passes the offer on.)
func (d *dataConn) promoteLocked() {
	if d.leader || d.waitHead == nil {
		return
	}
	select {
	case d.waitHead.done <- struct{}{}:
	default:
	}
}

// queueLocked appends c's caller to the waiting callers.
func (d *dataConn) queueLocked(c *dataCall) {
	c.queued = true
	c.prev, c.next = d.waitTail, nil
	if d.waitTail != nil {
		d.waitTail.next = c
	} else {
		d.waitHead = c
	}
	d.waitTail = c
}

// unqueueLocked takes c's caller out of the waiting callers, if it is
// there.
func (d *dataConn) unqueueLocked(c *dataCall) {
	if !c.queued {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		d.waitHead = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		d.waitTail = c.prev
	}
	c.queued, c.prev, c.next = false, nil, nil
}

// breakLocked ends the channel with err: every waiting call fails with
// it, and so does every later one.
func (d *dataConn) breakLocked(err error) {
	if d.err != nil {
		return
	}
	d.err = err
	clear(d.pending)
	d.abandoned = 0
	for c := d.waitHead; c != nil; c = c.next {
		select {
		case c.done <- struct{}{}:
		default:
		}
	}
	// The leader's wait returns (its socket reads the end); the plugin
	// sees the end of both too.
	sysShutdown(d.wfd)
	sysShutdown(d.rfd)
}

// leaveLocked records that a goroutine left its system calls on the sockets, and
// closes the descriptors when the channel was closed and it was the last.
func (d *dataConn) leaveLocked() {
	d.busy--
	if d.closed && d.busy == 0 && !d.fdsClosed {
		d.fdsClosed = true
		d.f.Close()
		sysClose(d.wfd)
		clear(d.rbuf[:]) // no leader is left to read it
	}
}

// send writes a frame (hdr and payload) whole, waiting while the socket's
// buffer is full until ctx ends. It reports whether the frame was sent;
// a frame cut short breaks the channel (err is then set).
func (d *dataConn) send(ctx context.Context, hdr, payload []byte) (sent bool, err error) {
	select {
	case d.wsem <- struct{}{}:
	case <-ctx.Done():
		return false, nil
	}
	defer func() { <-d.wsem }()
	d.mu.Lock()
	if d.err != nil {
		err := d.err
		d.mu.Unlock()
		return false, err
	}
	d.busy++
	d.mu.Unlock()
	var buf [maxFrameSize]byte
	n := copy(buf[:], hdr)
	n += copy(buf[n:], payload)
	stalled := false
	written, err := writeAll(d.wfd, buf[:n], func() bool {
		if d.noRoomSince.IsZero() {
			d.noRoomSince = time.Now()
		} else if time.Since(d.noRoomSince) >= d.stallLimit {
			stalled = true
			return true
		}
		return ctx.Err() != nil
	})
	clear(buf[frameHeaderSize:n])
	if err == nil {
		d.noRoomSince = time.Time{}
	}
	switch {
	case stalled:
		err = fmt.Errorf("%w: the plugin has taken no request for %v", errProtocol, d.stallLimit)
	case err == errGaveUp && written == 0:
		d.mu.Lock()
		d.leaveLocked()
		d.mu.Unlock()
		return false, nil
	case err == errGaveUp:
		err = errors.New("a frame to the plugin was cut short: the plugin does not read")
	case err != nil:
		err = fmt.Errorf("writing to the plugin: %w", err)
	}
	d.mu.Lock()
	if err != nil {
		d.breakLocked(err)
		err = d.err
	}
	d.leaveLocked()
	d.mu.Unlock()
	return err == nil, err
}

// cancel tells the plugin that the caller of call id has gone.
func (d *dataConn) cancel(id uint64) {
	ctx, stop := context.WithTimeout(context.Background(), cancelWriteTimeout)
	defer stop()
	var hdr [frameHeaderSize]byte
	putHeader(hdr[:], frame{kind: frameCancel, id: id})
	_, _ = d.send(ctx, hdr[:], nil)
}

// close ends the channel: calls waiting fail with ErrUnavailable, and the
// plugin's end sees it closed.
func (d *dataConn) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	d.breakLocked(errDataClosed)
	d.busy++
	d.leaveLocked()
}
