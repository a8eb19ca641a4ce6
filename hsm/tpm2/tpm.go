package tpm2

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gotpm "github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// Retry bounds.
const (
	maxWarningRetries = 8                      // TPM_RC_RETRY, _YIELDED, _TESTING, _NV_RATE
	maxReconnects     = 5                      // lost connection or TPM restart, per call
	retryBase         = 10 * time.Millisecond  // first backoff after a warning
	reconnectBase     = 50 * time.Millisecond  // first backoff after a lost connection
	maxBackoff        = 800 * time.Millisecond // backoff cap
)

// TPM is a connection to a TPM 2.0 through which keys are created,
// imported, loaded and used. It is safe for concurrent use; commands are
// serialised, because a TPM executes one command at a time and swtpm serves
// one connection at a time.
//
// All TPMs opened for the same transport in one process share one
// underlying connection, which stays open until the last TPM and Key using
// it are closed. The connection holds one storage root key (SRK), one
// salted HMAC session, and the keys in use, and recreates them after the
// TPM restarts or the connection is lost.
type TPM struct {
	c      *conn
	cfg    *config
	closed atomic.Bool
}

// Open connects to the TPM at spec:
//
//	/dev/tpmrm0 (also ""), /dev/tpm0      a TPM character device
//	tcp:127.0.0.1:2321, tcp://host:port   swtpm --server type=tcp (data port)
//	unix:/run/swtpm.sock                  swtpm --server type=unixio
//
// The first Open of a transport in the process connects and checks that
// the TPM answers; connection-level options (WithTransientSRK,
// WithLogger) take effect for it, and
// later Opens share that connection. Errors wrap [ErrTPMUnavailable] when
// the TPM cannot be reached.
func Open(ctx context.Context, spec string, opts ...Option) (*TPM, error) {
	ts, err := parseTransport(spec)
	if err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	// Auth values and allow-sign are per key (see mergedConfig): the
	// connection keeps no reference to them.
	cfg.perKey()
	c, err := acquireConn(ctx, ts, cfg)
	if err != nil {
		return nil, err
	}
	return &TPM{c: c, cfg: cfg}, nil
}

// Transport returns the canonical transport string of the connection.
func (t *TPM) Transport() string { return t.c.spec.String() }

// Close releases this TPM. The shared connection is closed (flushing the
// session, the SRK and loaded keys) when no other TPM or Key uses it. Keys
// opened through t stay usable until they are closed. Close is idempotent.
func (t *TPM) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	return t.c.release()
}

// Curves returns the curves among P-256, P-384 and P-521 that the TPM
// implements (TPM2_GetCapability(TPM_CAP_ECC_CURVES)).
func (t *TPM) Curves(ctx context.Context) ([]ecdh.Curve, error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("tpm2: curves: %w", ErrClosed)
	}
	var out []ecdh.Curve
	err := t.c.do(ctx, func() error {
		var err error
		out, err = t.c.curves()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tpm2: curves: %w", err)
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// The shared connection.

var registry = struct {
	sync.Mutex
	conns map[string]*conn
}{conns: map[string]*conn{}}

// conn is the process-wide connection to one TPM transport.
type conn struct {
	spec transportSpec
	cfg  *config
	log  *slog.Logger
	refs int // guarded by registry

	sem chan struct{} // the connection lock, a semaphore so waiting honours ctx

	// Guarded by sem.
	tr            transport.TPMCloser // nil while disconnected
	everConnected bool
	closed        bool
	srk           Handle // parent for new keys, see srkID
	parents       map[Handle]*parent
	sess          *session
	loaded        map[*Key]*loadedKey
	tick          uint64
	curveSet      []ecdh.Curve
	// endorsement is what Endorsement read (EK certificate, chain, EK
	// public area), kept until the connection's state is reset: reading
	// it again means NV reads and, without a persistent EK, deriving the
	// EK (an RSA 2048 CreatePrimary, seconds on a discrete TPM) for
	// every key's evidence.
	endorsement *Endorsement
}

// loadedKey is a key loaded at a transient handle. Its name is the Key's:
// ensureLoaded checks that.
type loadedKey struct {
	handle  gotpm.TPMHandle
	lastUse uint64
}

func acquireConn(ctx context.Context, ts transportSpec, cfg *config) (*conn, error) {
	key := ts.String()
	registry.Lock()
	c := registry.conns[key]
	if c != nil {
		c.refs++
		registry.Unlock()
		return c, nil
	}
	c = &conn{
		spec:    ts,
		cfg:     cfg,
		log:     cfg.logger,
		refs:    1,
		sem:     make(chan struct{}, 1),
		parents: map[Handle]*parent{},
		loaded:  map[*Key]*loadedKey{},
	}
	registry.conns[key] = c
	registry.Unlock()

	// Connect now, so Open reports an unreachable TPM at once.
	err := c.do(ctx, func() error { return nil })
	if err != nil {
		c.release()
		return nil, err
	}
	return c, nil
}

// addRef takes another reference on c, for a Key.
func (c *conn) addRef() {
	registry.Lock()
	c.refs++
	registry.Unlock()
}

// release drops a reference and closes the connection with the last one.
func (c *conn) release() error {
	registry.Lock()
	c.refs--
	last := c.refs == 0
	if last && registry.conns[c.spec.String()] == c {
		delete(registry.conns, c.spec.String())
	}
	registry.Unlock()
	if !last {
		return nil
	}
	c.sem <- struct{}{}
	defer func() { <-c.sem }()
	c.closed = true
	c.resetState(true)
	if c.tr != nil {
		err := c.tr.Close()
		c.tr = nil
		return err
	}
	return nil
}

// lock takes the connection lock, giving up when ctx is done.
func (c *conn) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		<-c.sem
		return err
	}
	return nil
}

func (c *conn) unlock() { <-c.sem }

// do runs op under the connection lock, connecting first if needed, and
// retries it: after TPM_RC_RETRY, _YIELDED, _TESTING and _NV_RATE with a
// short backoff; after a lost connection, a TPM restart or lost handles by
// reconnecting (or restarting the TPM) and recreating the SRK, the session
// and loaded keys. Both are bounded; op must be safe to repeat.
func (c *conn) do(ctx context.Context, op func() error) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.unlock()
	if c.closed {
		return ErrClosed
	}
	warnings, reconnects := 0, 0
	for {
		if c.tr == nil {
			if err := c.connect(ctx); err != nil {
				// At the first connect an unreachable TPM is reported at
				// once; once connected, it may be restarting: retry.
				if !c.everConnected || !(errors.Is(err, ErrTPMUnavailable) || isTransportError(err)) {
					return err
				}
				reconnects++
				c.log.Warn("tpm2: reconnect failed", "transport", c.spec.String(), "attempt", reconnects, "err", err)
				if reconnects > maxReconnects {
					if !errors.Is(err, ErrTPMUnavailable) {
						err = fmt.Errorf("%w: %w", ErrTPMUnavailable, err)
					}
					return fmt.Errorf("not reconnected after %d attempts: %w", maxReconnects, err)
				}
				if err := sleepCtx(ctx, backoff(reconnectBase, reconnects-1)); err != nil {
					return err
				}
				continue
			}
			c.everConnected = true
		}
		err := op()
		switch {
		case err == nil:
			return nil
		case isFinal(err):
			return err
		case isTransportError(err):
			reconnects++
			c.log.Warn("tpm2: connection lost", "transport", c.spec.String(), "attempt", reconnects, "err", err)
			c.disconnect()
			if reconnects > maxReconnects {
				return fmt.Errorf("%w: connection lost and not re-established after %d attempts: %w", ErrTPMUnavailable, maxReconnects, err)
			}
			if err := sleepCtx(ctx, backoff(reconnectBase, reconnects-1)); err != nil {
				return err
			}
		case isRetryWarning(err):
			warnings++
			if warnings > maxWarningRetries {
				return fmt.Errorf("TPM still busy after %d retries: %w", maxWarningRetries, err)
			}
			if err := sleepCtx(ctx, backoff(retryBase, warnings-1)); err != nil {
				return err
			}
		case isStateLost(err):
			reconnects++
			c.log.Warn("tpm2: TPM state lost, recreating", "transport", c.spec.String(), "attempt", reconnects, "err", err)
			if reconnects > maxReconnects {
				return fmt.Errorf("TPM state lost repeatedly: %w", err)
			}
			if errors.Is(err, gotpm.TPMRCInitialize) {
				if err := c.startup(); err != nil {
					return err
				}
			}
			c.resetState(true)
		default:
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// isFinal reports whether err is already one of this package's verdicts,
// which no retry changes.
func isFinal(err error) bool {
	for _, s := range []error{ErrKeyNotFound, ErrWrongTPM, ErrAuthFail, ErrLockout, ErrInvalidKeyFile, ErrAuthRequired,
		ErrUnsupportedKey, ErrUnsupportedCurve, ErrHandleInUse, ErrClosed, ErrTPMUnavailable,
		kem.ErrInvalidPublicKey, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func backoff(base time.Duration, n int) time.Duration {
	d := base << n
	if d > maxBackoff || d <= 0 {
		d = maxBackoff
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connect opens the transport, makes sure the TPM is started, and flushes
// transient objects and sessions that a previous client left behind.
func (c *conn) connect(ctx context.Context) (err error) {
	cctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	tr, err := openRaw(cctx, c.spec, ioTimeout)
	if err != nil {
		return err
	}
	c.tr = tr
	defer func() {
		if err != nil {
			c.disconnect()
		}
	}()
	c.resetState(false)
	// The first command is the probe; a TPM that was never started answers
	// TPM_RC_INITIALIZE.
	if c.spec.hasResourceManager() {
		_, err = c.getCap(gotpm.TPMCapHandles, uint32(gotpm.TPMHTTransient)<<24, 1)
	} else {
		err = c.flushStale()
	}
	if errors.Is(err, gotpm.TPMRCInitialize) {
		// TPM2_Startup(CLEAR) leaves no objects or sessions to flush.
		return c.startup()
	}
	return err
}

// disconnect drops the transport after an I/O error. The TPM-side state is
// forgotten, not flushed: the next connect flushes whatever is left.
func (c *conn) disconnect() {
	if c.tr != nil {
		c.tr.Close()
		c.tr = nil
	}
	c.resetState(false)
}

// startup sends TPM2_Startup(CLEAR) to a TPM that needs it.
func (c *conn) startup() error {
	c.log.Warn("tpm2: TPM not started, sending TPM2_Startup(CLEAR)", "transport", c.spec.String())
	_, err := gotpm.Startup{StartupType: gotpm.TPMSUClear}.Execute(c.tr)
	if err != nil && !errors.Is(err, gotpm.TPMRCInitialize) { // already started: fine
		return fmt.Errorf("tpm2: TPM2_Startup: %w", err)
	}
	return nil
}

// resetState forgets the session, the SRK and all loaded keys; with flush
// set it first flushes them from the TPM (errors ignored: they may be gone
// already).
func (c *conn) resetState(flush bool) {
	if flush && c.tr != nil {
		if c.sess != nil {
			c.flush(c.sess.handle)
		}
		for _, lk := range c.loaded {
			c.flush(lk.handle)
		}
		for _, p := range c.parents {
			if !p.persistent {
				c.flush(p.handle)
			}
		}
	}
	if c.sess != nil {
		c.sess.destroy()
		c.sess = nil
	}
	clear(c.loaded)
	clear(c.parents)
	c.endorsement = nil
}

// flush flushes a transient object or session, ignoring errors.
func (c *conn) flush(h gotpm.TPMHandle) {
	if c.tr == nil || h == 0 {
		return
	}
	_, _ = gotpm.FlushContext{FlushHandle: h}.Execute(c.tr)
}

// flushStale flushes every transient object and loaded session. Without a
// resource manager (swtpm, /dev/tpm0) these can only be leftovers of a
// client that died, and they would use up the TPM's few slots.
func (c *conn) flushStale() error {
	n := 0
	for _, ht := range []gotpm.TPMHT{gotpm.TPMHTTransient, gotpm.TPMHTHMACSession, gotpm.TPMHTPolicySession} {
		hs, err := c.handles(ht)
		if err != nil {
			return err
		}
		for _, h := range hs {
			if _, err := (gotpm.FlushContext{FlushHandle: h}).Execute(c.tr); err != nil && !errors.Is(err, gotpm.TPMRCHandle) {
				return fmt.Errorf("tpm2: flushing stale handle %v: %w", Handle(h), err)
			}
			n++
		}
	}
	if n > 0 {
		c.log.Info("tpm2: flushed stale handles", "transport", c.spec.String(), "count", n)
	}
	return nil
}

func (c *conn) getCap(cp gotpm.TPMCap, prop, count uint32) (*gotpm.GetCapabilityResponse, error) {
	return gotpm.GetCapability{Capability: cp, Property: prop, PropertyCount: count}.Execute(c.tr)
}

// handles lists the handles of one type (TPM_CAP_HANDLES).
func (c *conn) handles(ht gotpm.TPMHT) ([]gotpm.TPMHandle, error) {
	var out []gotpm.TPMHandle
	next := uint32(ht) << 24
	for {
		rsp, err := c.getCap(gotpm.TPMCapHandles, next, 64)
		if err != nil {
			return nil, err
		}
		l, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, err
		}
		for _, h := range l.Handle {
			if uint32(h)>>24 != uint32(ht) {
				return out, nil
			}
			out = append(out, h)
		}
		if !rsp.MoreData || len(l.Handle) == 0 {
			return out, nil
		}
		next = uint32(l.Handle[len(l.Handle)-1]) + 1
	}
}

func (c *conn) curves() ([]ecdh.Curve, error) {
	if c.curveSet != nil {
		return c.curveSet, nil
	}
	rsp, err := c.getCap(gotpm.TPMCapECCCurves, 0, 64)
	if err != nil {
		return nil, err
	}
	l, err := rsp.CapabilityData.Data.ECCCurves()
	if err != nil {
		return nil, err
	}
	out := []ecdh.Curve{}
	for _, want := range []ecdh.Curve{ecdh.P256(), ecdh.P384(), ecdh.P521()} {
		if slices.Contains(l.ECCCurves, tpmCurve(want)) {
			out = append(out, want)
		}
	}
	c.curveSet = out
	return out, nil
}

// ensureSession returns the connection's salted session, starting it (and
// the SRK it is salted to) if needed.
func (c *conn) ensureSession() (*session, error) {
	if c.sess != nil {
		return c.sess, nil
	}
	id, err := c.srkID()
	if err != nil {
		return nil, err
	}
	p, err := c.parentFor(id)
	if err != nil {
		return nil, err
	}
	s, err := startSession(c.tr, p.handle, &p.pub)
	if err != nil {
		return nil, fmt.Errorf("tpm2: starting session: %w", err)
	}
	c.sess = s
	return s, nil
}

// withObjectMemory runs fn, and when the TPM has no room for another object
// (TPM_RC_OBJECT_MEMORY) flushes the least recently used loaded key other
// than keep and tries again.
func (c *conn) withObjectMemory(keep *Key, fn func() error) error {
	for {
		err := fn()
		if err == nil || !(errors.Is(err, gotpm.TPMRCObjectMemory) || errors.Is(err, gotpm.TPMRCObjectHandles)) {
			return err
		}
		if !c.evictLRU(keep) {
			return err
		}
	}
}

// maxTransientObjects is how many transient objects this package keeps
// loaded on one connection.
const maxTransientObjects = 3

// transientObjects counts the transient objects this connection holds.
func (c *conn) transientObjects() int {
	n := len(c.loaded)
	for _, p := range c.parents {
		if !p.persistent {
			n++
		}
	}
	return n
}

// makeRoom flushes loaded keys other than keep until n more transient
// objects fit within maxTransientObjects.
func (c *conn) makeRoom(keep *Key, n int) {
	for c.transientObjects()+n > maxTransientObjects && c.evictLRU(keep) {
	}
}

// evictLRU flushes the least recently used loaded key other than keep.
func (c *conn) evictLRU(keep *Key) bool {
	var victim *Key
	var oldest uint64
	for k, lk := range c.loaded {
		if k != keep && (victim == nil || lk.lastUse < oldest) {
			victim, oldest = k, lk.lastUse
		}
	}
	if victim == nil {
		return false
	}
	c.unload(victim)
	return true
}

// unload flushes the transient copy of k, if one is loaded.
func (c *conn) unload(k *Key) {
	if lk := c.loaded[k]; lk != nil {
		c.flush(lk.handle)
		delete(c.loaded, k)
	}
}
