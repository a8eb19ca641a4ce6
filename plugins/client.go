package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twoway-hsm/twoway-hsm/internal/osthread"
	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
)

// Client runs a plugin binary in one or more processes and hands out its
// keys. It is safe for concurrent use. Close stops the plugins; a host
// should also call [CleanupClients] on its way out.
type Client struct {
	cfg    Config
	slots  []*slot
	desc   *Description
	keys   map[string]*Key
	rr     atomic.Uint32
	closed atomic.Bool
	done   chan struct{}
	wg     sync.WaitGroup // background starts and kills
	bgMu   sync.Mutex
	bgDone bool // no more background work once set (Close)

	closeOnce sync.Once
}

// slot is one position of the process pool: at most one live process,
// restarted after a crash.
type slot struct {
	idx      int
	thread   *osthread.Thread
	cur      atomic.Pointer[proc]
	inflight atomic.Int64

	mu       sync.Mutex
	starting chan struct{} // closed when the running start ends; nil if none
	lastErr  error         // why the last start failed
	failures int           // consecutive failed starts (or crashes right after a start)
	next     time.Time     // no start before this
}

var registry = struct {
	sync.Mutex
	clients map[*Client]struct{}
}{clients: make(map[*Client]struct{})}

// CleanupClients closes every Client of this process that is still open,
// stopping their plugins. Call it (deferred in main) on the way out of a
// host; plugins of a host that dies without calling it are killed by the
// kernel on Linux (see Config).
//
// It replaces go-plugin's plugin.CleanupClients, whose list of managed
// clients only grows: a plugin restarted after each of many crashes would
// leak memory there.
func CleanupClients() {
	registry.Lock()
	cs := make([]*Client, 0, len(registry.clients))
	for c := range registry.clients {
		cs = append(cs, c)
	}
	registry.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
}

// NewClient starts the plugin processes of cfg and waits until each serves
// its keys; see NewClientContext.
func NewClient(cfg Config) (*Client, error) {
	return NewClientContext(context.Background(), cfg)
}

// NewClientContext is NewClient with a context whose deadline bounds each
// process start (as does Config.StartTimeout) and whose end stops the
// start between processes and attempts. It fails if any process cannot be
// started, if the binary's checksum is wrong ([ErrChecksum]), or if the
// processes do not serve the same keys.
func NewClientContext(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, done: make(chan struct{})}
	for i := range cfg.Processes {
		c.slots = append(c.slots, &slot{idx: i, thread: osthread.New()})
	}
	registry.Lock()
	registry.clients[c] = struct{}{}
	registry.Unlock()

	// Processes start one after the other: SoftHSM misreads its token
	// directory when several processes initialise it at once. The first
	// start checks the configuration; a later one that fails is retried
	// with backoff.
	var procs []*proc
	fail := func(err error) (*Client, error) {
		for _, p := range procs {
			p.kill(false)
		}
		c.Close()
		return nil, err
	}
	for _, s := range c.slots {
		var p *proc
		var err error
		for attempt := 1; ; attempt++ {
			p, err = c.startProcess(ctx, s.thread, s.idx)
			if err == nil || s.idx == 0 || attempt == 3 || errors.Is(err, ErrChecksum) || ctx.Err() != nil {
				break
			}
			cfg.Logger.Warn("plugin start failed; retrying", "plugin_bin", cfg.Path, "plugin_slot", s.idx, "error", err)
			select {
			case <-time.After(c.backoff(attempt)):
			case <-ctx.Done():
			}
		}
		if err != nil {
			return fail(err)
		}
		if len(procs) > 0 && !sameKeys(procs[0].desc, p.desc) {
			p.kill(false)
			return fail(fmt.Errorf("plugins: the plugin processes serve different keys"))
		}
		procs = append(procs, p)
	}
	for i, p := range procs {
		c.slots[i].cur.Store(p)
	}
	c.desc = procs[0].desc
	c.keys = make(map[string]*Key, len(c.desc.Keys))
	for _, info := range c.desc.Keys {
		c.keys[info.Name] = newKey(c, info)
	}
	return c, nil
}

// Plugin returns the name and version the plugin reports.
func (c *Client) Plugin() string { return c.desc.Plugin }

// Key returns the key the plugin serves under name: its reference without
// the query part (see [KeyName]); the full reference is accepted too. The
// same *Key is returned for every call. ctx is not used today (the keys
// are known from the start) but bounds any future lookup.
func (c *Client) Key(ctx context.Context, name string) (*Key, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("plugins: key: %w", err)
	}
	k, ok := c.keys[KeyName(name)]
	if !ok {
		names := make([]string, 0, len(c.desc.Keys))
		for _, info := range c.desc.Keys {
			names = append(names, info.Name)
		}
		// A name may carry a pin-value in its path part; never repeat it.
		return nil, fmt.Errorf("%w: %q; the plugin serves %q", ErrUnknownKey, keyref.Redact(KeyName(name)), names)
	}
	return k, nil
}

// PIDs returns the process IDs of the running plugin processes, for
// monitoring and tests.
func (c *Client) PIDs() []int {
	var out []int
	for _, s := range c.slots {
		if p := s.cur.Load(); p != nil && !p.dead.Load() {
			out = append(out, p.pid)
		}
	}
	return out
}

// Close stops the plugin processes (each closes its keys and exits; one
// that does not within 5 seconds is killed) and waits for them to exit.
// Calls in flight fail with ErrClosed or ErrUnavailable. Close is
// idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.done)
		c.bgMu.Lock()
		c.bgDone = true
		c.bgMu.Unlock()
		// Starts under way finish (bounded by StartTimeout) and kill
		// what they started; background kills finish.
		c.wg.Wait()
		var wg sync.WaitGroup
		for _, s := range c.slots {
			if p := s.cur.Swap(nil); p != nil {
				wg.Add(1)
				go func() { defer wg.Done(); p.kill(true) }()
			}
		}
		wg.Wait()
		for _, s := range c.slots {
			s.thread.Stop()
		}
		registry.Lock()
		delete(registry.clients, c)
		registry.Unlock()
	})
	return nil
}

// spawn runs f in the background unless the client is closing, and
// reports whether it did. Close waits for everything spawned.
func (c *Client) spawn(f func()) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgDone {
		return false
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); f() }()
	return true
}

// call sends a request of kind for the key named name with payload to a
// live plugin process over its data channel (see acquire).
func (c *Client) call(ctx context.Context, op string, kind byte, name string, payload []byte) ([]byte, error) {
	s, p, err := c.acquire(ctx)
	if err != nil {
		return nil, err
	}
	idx, ok := p.index[name]
	if !ok { // the processes serve the same keys (sameKeys)
		c.release(s, p, nil)
		return nil, fmt.Errorf("plugins: %s: %w: %q", op, ErrUnknownKey, name)
	}
	out, err := p.data.call(ctx, op, kind, idx, payload)
	return out, c.release(s, p, err)
}

// control makes a call f on the control channel (gRPC) of a live plugin
// process (see acquire).
func (c *Client) control(ctx context.Context, f func(*GRPCClient) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, p, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	return c.release(s, p, f(p.ctl))
}

// acquire begins a call: it picks a slot and returns its live process,
// starting one if needed. The call counts as in flight on the slot (see
// pick) until the caller passes its outcome to release.
func (c *Client) acquire(ctx context.Context) (*slot, *proc, error) {
	if c.closed.Load() {
		return nil, nil, ErrClosed
	}
	s := c.pick()
	s.inflight.Add(1)
	p, err := c.live(ctx, s)
	if err != nil {
		s.inflight.Add(-1)
		return nil, nil, err
	}
	return s, p, nil
}

// release ends a call begun by acquire and returns its error err. An error
// that means the process is gone wraps ErrUnavailable: it retires the
// process, so that the next call starts a new one.
func (c *Client) release(s *slot, p *proc, err error) error {
	s.inflight.Add(-1)
	if err != nil && errors.Is(err, ErrUnavailable) {
		c.retire(s, p, "call failed")
		if c.closed.Load() {
			return fmt.Errorf("%w (%w)", ErrClosed, err)
		}
	}
	return err
}

// pick chooses the slot for a call: the least busy of those with a live
// process (ties broken round-robin), or, when none has one, the least busy
// slot. Slots whose process is gone get a restart started in the
// background.
func (c *Client) pick() *slot {
	if len(c.slots) == 1 {
		return c.slots[0]
	}
	n := len(c.slots)
	start := int(c.rr.Add(1)) % n
	var best, fallback *slot
	for i := range n {
		s := c.slots[(start+i)%n]
		p := s.cur.Load()
		if p == nil || p.dead.Load() {
			c.restartInBackground(s)
			if fallback == nil || s.inflight.Load() < fallback.inflight.Load() {
				fallback = s
			}
			continue
		}
		if best == nil || s.inflight.Load() < best.inflight.Load() {
			best = s
		}
	}
	if best != nil {
		return best
	}
	return fallback
}

// live returns the slot's live process, starting one (or waiting for the
// start under way) if there is none.
func (c *Client) live(ctx context.Context, s *slot) (*proc, error) {
	for round := 0; ; round++ {
		if p := s.cur.Load(); p != nil && !p.dead.Load() {
			return p, nil
		}
		if p := s.cur.Load(); p != nil {
			c.retire(s, p, "plugin exited")
		}
		ch, err := c.ensureStart(ctx, s)
		if err != nil {
			return nil, err
		}
		select {
		case <-ch:
			if p := s.cur.Load(); p != nil && !p.dead.Load() {
				return p, nil
			}
			s.mu.Lock()
			err := s.lastErr
			s.mu.Unlock()
			if c.closed.Load() {
				return nil, ErrClosed
			}
			if err != nil || round >= 2 {
				if err == nil {
					err = errors.New("the plugin keeps exiting right after its start")
				}
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for the plugin to start: %w", ErrUnavailable, ctx.Err())
		case <-c.done:
			return nil, ErrClosed
		}
	}
}

// restartInBackground starts the slot's process if it is gone and no start
// is under way or waiting out a backoff.
func (c *Client) restartInBackground(s *slot) {
	if p := s.cur.Load(); p != nil {
		c.retire(s, p, "plugin exited")
	}
	_, _ = c.ensureStart(context.Background(), s)
}

// ensureStart returns a channel closed when the slot's current or new
// start ends. It fails at once, wrapping ErrUnavailable, when the backoff
// after failed starts ends after ctx's deadline.
func (c *Client) ensureStart(ctx context.Context, s *slot) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if s.starting != nil {
		return s.starting, nil
	}
	if s.cur.Load() != nil {
		ch := make(chan struct{})
		close(ch)
		return ch, nil
	}
	wait := time.Until(s.next)
	if wait > 0 {
		if dl, ok := ctx.Deadline(); ok && dl.Before(s.next) {
			return nil, fmt.Errorf("%w: restarting after %d failed starts, next attempt in %v: %w", ErrUnavailable, s.failures, wait.Round(time.Millisecond), s.lastErr)
		}
	}
	ch := make(chan struct{})
	if !c.spawn(func() { c.restart(s, ch, wait) }) {
		return nil, ErrClosed
	}
	s.starting = ch
	return ch, nil
}

// restart starts a process for the slot after waiting wait.
func (c *Client) restart(s *slot, ch chan struct{}, wait time.Duration) {
	var p *proc
	var err error
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.done:
			t.Stop()
			err = ErrClosed
		}
	}
	if err == nil {
		p, err = c.startProcess(context.Background(), s.thread, s.idx)
	}
	if err == nil && !sameKeys(c.desc, p.desc) {
		p.kill(false)
		p, err = nil, fmt.Errorf("plugins: the restarted plugin serves other keys than before; refusing it")
	}
	s.mu.Lock()
	if err != nil {
		s.failures++
		s.lastErr = err
		s.next = time.Now().Add(c.backoff(s.failures))
		c.cfg.Logger.Error("plugin start failed", "plugin_bin", c.cfg.Path, "plugin_slot", s.idx, "failures", s.failures, "error", err)
	} else if c.closed.Load() {
		p.kill(false)
		s.lastErr = ErrClosed
	} else {
		s.lastErr = nil
		s.cur.Store(p)
	}
	s.starting = nil
	close(ch)
	s.mu.Unlock()
}

// retire removes a process that is gone (or failed a call as if it were)
// from its slot and kills it in the background. A process that dies soon
// after its start counts as a failed start, so a plugin that crashes at
// once is restarted with backoff rather than in a tight loop.
func (c *Client) retire(s *slot, p *proc, why string) {
	if !s.cur.CompareAndSwap(p, nil) {
		return
	}
	s.mu.Lock()
	if time.Since(p.started) < time.Second {
		s.failures++
		s.lastErr = fmt.Errorf("plugin pid %d exited %v after its start", p.pid, time.Since(p.started).Round(time.Millisecond))
		s.next = time.Now().Add(c.backoff(s.failures))
	} else {
		s.failures = 0
	}
	s.mu.Unlock()
	c.cfg.Logger.Warn("plugin process lost; it will be restarted", "plugin_bin", c.cfg.Path, "plugin_slot", s.idx, "pid", p.pid, "reason", why)
	if !c.spawn(func() { p.kill(false) }) {
		p.kill(false)
	}
}

// backoff is the wait after n consecutive failures: MinBackoff doubled
// n-1 times, capped at MaxBackoff.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MinBackoff
	for i := 1; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxBackoff)
}
