package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// A keyring is one generation of the gateway's keys: the plugin client
// that serves them, the twoway.Gateway that opens requests with them, and
// the gateway handler around it. A reload builds a new keyring and swaps
// it in; the old one is closed once the requests it took have finished.
type keyring struct {
	client   *plugins.Client
	entries  []gatewayKeyEntry
	keys     map[byte]*plugins.Key
	suites   map[byte][]twoway.SymmetricSuite
	tw       *twoway.Gateway
	handler  *gateway.Handler
	evidence *gateway.EvidenceHandler // the keys' TPM evidence (gateway_evidence.go)
	pids     []int                    // the plugin processes at open, the baseline of pluginWatch

	mu     sync.Mutex
	users  int
	closed bool
	idle   chan struct{} // closed when users reaches 0 after retire
}

// openKeyring starts the plugin with every key of cfg (active or not yet:
// a key must be open before its window starts) and builds the handler.
func (g *gatewayCmd) openKeyring(ctx context.Context, cfg gatewayConfig) (*keyring, error) {
	refs := make([]string, len(cfg.Keys))
	for i, k := range cfg.Keys {
		refs[i] = k.Ref
	}
	path := cfg.Plugin
	var sum []byte
	if path == "" {
		bin, err := selfBinary()
		if err != nil {
			return nil, err
		}
		path, sum = bin.path, bin.sum
	}
	client, err := plugins.NewClientContext(ctx, plugins.Config{
		Path:      path,
		Keys:      refs,
		Env:       pluginEnviron(g.env, refs, cfg.PluginEnv),
		Processes: cfg.Processes,
		Logger:    g.log.With("component", "plugin"),
		Checksum:  sum,
	})
	if err != nil {
		var se *plugins.StartError
		if errors.As(err, &se) && ctx.Err() == nil {
			return nil, fmt.Errorf("the plugin exited: %s", se.Reason)
		}
		return nil, fmt.Errorf("starting the plugin: %w", err)
	}
	kr := &keyring{client: client, entries: cfg.Keys, keys: map[byte]*plugins.Key{}, pids: client.PIDs(),
		suites: map[byte][]twoway.SymmetricSuite{}, tw: twoway.NewGateway(nil), idle: make(chan struct{})}
	for _, e := range cfg.Keys {
		k, err := client.Key(ctx, plugins.KeyName(e.Ref))
		if err != nil {
			client.Close()
			return nil, fmt.Errorf("key %d: %w", e.ID, err)
		}
		ss := e.suites // parsed by validate
		if len(ss) == 0 {
			ss = defaultSuites(k.KEM())
		}
		kr.keys[byte(e.ID)] = k
		kr.suites[byte(e.ID)] = ss
	}
	kr.applyWindows(time.Now(), g.log)
	opts := []gateway.Option{
		gateway.WithPath(cfg.Path),
		gateway.WithKeyConfigMaxAge(time.Duration(cfg.CacheMaxAge)),
		gateway.WithMaxRequestLen(cfg.MaxRequestLen),
		gateway.WithMaxResponseLen(cfg.MaxResponseLen),
		gateway.WithHandlerTimeout(time.Duration(cfg.HandlerTimeout)),
		gateway.WithMaxConcurrent(cfg.MaxConcurrent),
		gateway.WithLogger(g.log.With("component", "gateway")),
		gateway.WithMetrics(g.metrics),
		gateway.WithTargetPolicy(g.policy),
	}
	if cfg.KeyConfigPath != "" {
		opts = append(opts, gateway.WithKeyConfigPath(cfg.KeyConfigPath))
	}
	if kr.handler, err = gateway.New(kr.tw, g.origin, opts...); err != nil {
		client.Close()
		return nil, err
	}
	if kr.evidence, err = g.newEvidence(ctx, kr, cfg); err != nil {
		client.Close()
		return nil, err
	}
	return kr, nil
}

// keyState is where a key is in its window at a time.
type keyState int

const (
	keyPending   keyState = iota // before not_before: neither accepted nor published
	keyPublished                 // accepted and published
	keyRetiring                  // accepted, no longer published
	keyExpired                   // after not_after: gone
)

func (s keyState) String() string {
	return [...]string{"pending", "published", "retiring", "expired"}[s]
}

// stateAt returns the key's state at now.
func (e *gatewayKeyEntry) stateAt(now time.Time) keyState {
	switch {
	case e.NotBefore != nil && now.Before(*e.NotBefore):
		return keyPending
	case e.NotAfter != nil && !now.Before(*e.NotAfter):
		return keyExpired
	case e.PublishUntil != nil && !now.Before(*e.PublishUntil):
		return keyRetiring
	}
	return keyPublished
}

// applyWindows adds, hides and removes keys of the twoway.Gateway as their
// windows say at now, and logs each change.
func (kr *keyring) applyWindows(now time.Time, log *slog.Logger) {
	for _, e := range kr.entries {
		id := byte(e.ID)
		st := e.stateAt(now)
		switch st {
		case keyPending, keyExpired:
			if kr.tw.RemoveKey(id) {
				log.Info("key no longer accepted", "key_id", e.ID, "state", st.String())
			}
			continue
		}
		publish := st == keyPublished
		was, ok := kr.tw.Published(id)
		switch {
		case !ok:
			// A key added in its retiring window is never published,
			// not even for an instant.
			add := kr.tw.AddKey
			if !publish {
				add = kr.tw.AddUnpublishedKey
			}
			if err := add(id, kr.keys[id], kr.suites[id]...); err != nil {
				log.Error("cannot serve key", "key_id", e.ID, "error", err.Error())
				continue
			}
			log.Info("key accepted", "key_id", e.ID, "state", st.String(), "kem", kr.keys[id].KEM().String())
		case was != publish:
			kr.tw.SetPublished(id, publish)
			log.Info("key publication changed", "key_id", e.ID, "state", st.String())
		}
	}
}

// acquire counts a request that uses the keyring; false when it is
// closed (the caller takes the current one instead).
func (kr *keyring) acquire() bool {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.closed {
		return false
	}
	kr.users++
	return true
}

func (kr *keyring) release() {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.users--
	if kr.closed && kr.users == 0 {
		close(kr.idle)
	}
}

// retire stops new requests from taking the keyring and closes its plugin
// once the requests that took it have finished, or when ctx ends.
func (kr *keyring) retire(ctx context.Context) error {
	kr.mu.Lock()
	if !kr.closed {
		kr.closed = true
		if kr.users == 0 {
			close(kr.idle)
		}
	}
	kr.mu.Unlock()
	select {
	case <-kr.idle:
	case <-ctx.Done():
	}
	return kr.client.Close()
}

// ready reports whether every accepted key's plugin answers: an ECDH with
// a fresh peer key (a Diffie-Hellman KEM), or a running plugin process.
func (kr *keyring) ready(ctx context.Context) error {
	for _, e := range kr.entries {
		st := e.stateAt(time.Now())
		if st == keyPending || st == keyExpired {
			continue
		}
		k := kr.keys[byte(e.ID)]
		if !k.KEM().IsDH() {
			if len(kr.client.PIDs()) == 0 {
				return fmt.Errorf("key %d: no plugin process runs", e.ID)
			}
			continue
		}
		peer, err := kem.GenerateKey(k.KEM())
		if err != nil {
			return err
		}
		if _, err := k.ECDHContext(ctx, peer.PublicKeyBytes()); err != nil {
			return fmt.Errorf("key %d: %w", e.ID, err)
		}
	}
	return nil
}
