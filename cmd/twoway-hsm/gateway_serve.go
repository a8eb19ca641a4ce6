package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// gatewayCmd is a running twoway-hsm gateway.
type gatewayCmd struct {
	env     *environment
	cfgFile string
	log     *slog.Logger
	metrics *gateway.Metrics
	origin  http.Handler
	policy  func(*http.Request) error
	current atomic.Pointer[keyring]
	certs   certLoader

	evidenceOnce    sync.Once
	evidenceLimiter *rate.Limiter // shared by every keyring's evidence handler

	reloadMu sync.Mutex // one reload at a time
	cfg      gatewayConfig

	readyMu   sync.Mutex
	readyAt   time.Time
	readyErr  error
	readyOnce time.Duration
}

// newGatewayLog returns the gateway's logger: JSON records on stderr.
func newGatewayLog(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// readyCacheFor is how long a readiness answer is reused: /readyz probes
// the hardware, which a probe every few seconds per load balancer must not
// keep busy.
const readyCacheFor = 2 * time.Second

// run serves until ctx ends or SIGTERM/SIGINT, reloading on SIGHUP.
func (g *gatewayCmd) run(ctx context.Context, cfg gatewayConfig) error {
	defer plugins.CleanupClients()
	g.cfg = cfg
	g.readyOnce = readyCacheFor
	g.metrics = gateway.NewMetrics()
	var err error
	if g.origin, g.policy, err = newOrigin(cfg); err != nil {
		return err
	}
	if cfg.TLSCert != "" {
		if err := g.certs.load(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
	}
	kr, err := g.openKeyring(ctx, cfg)
	if err != nil {
		return err
	}
	g.current.Store(kr)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		kr.retire(ctx)
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", g.healthz)
	mux.HandleFunc("/readyz", g.readyz)
	mux.Handle("/", http.HandlerFunc(g.serveOHTTP))
	srv := gateway.NewServer(cfg.Listen, mux)
	srv.ReadHeaderTimeout, srv.IdleTimeout = time.Duration(cfg.ReadHeaderTimeout), time.Duration(cfg.IdleTimeout)
	srv.ErrorLog = slog.NewLogLogger(g.log.With("component", "http").Handler(), slog.LevelWarn)
	if cfg.TLSCert != "" {
		tc, err := g.tlsConfig(cfg)
		if err != nil {
			ln.Close()
			kr.retire(ctx)
			return err
		}
		srv.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
	}
	servers := []*http.Server{srv}
	listeners := []net.Listener{ln}
	if cfg.MetricsListen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(g.metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mm := http.NewServeMux()
		mm.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mm.HandleFunc("/healthz", g.healthz)
		mm.HandleFunc("/readyz", g.readyz)
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			kr.retire(ctx)
			return err
		}
		msrv := gateway.NewServer(cfg.MetricsListen, mm)
		servers, listeners = append(servers, msrv), append(listeners, mln)
	}

	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			if err := s.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	g.log.Info("gateway serving", "url", scheme+"://"+ln.Addr().String()+cfg.Path, "metrics", metricsAddr(listeners),
		"keys", len(cfg.Keys), "plugin_pids", kr.client.PIDs())
	// Tests and scripts read the address from this line when --listen
	// asked for port 0.
	fmt.Fprintf(g.env.stdout, "listening on %s\n", ln.Addr())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var watch pluginWatch
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case s := <-sigs:
			if s == syscall.SIGHUP {
				g.reload(ctx)
				continue
			}
			g.log.Info("shutting down", "signal", s.String())
			break loop
		case now := <-tick.C:
			cur := g.current.Load()
			cur.applyWindows(now, g.log)
			// A plugin process that is gone was restarted by the client
			// (or will be at the next call): count it.
			for _, pid := range watch.gone(cur, cur.client.PIDs()) {
				g.metrics.PluginRestarts.Inc()
				g.log.Warn("plugin process gone; the client restarts it", "pid", pid)
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(g.cfg.ShutdownTimeout))
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			g.log.Warn("requests still in flight at the shutdown timeout were cut", "error", err.Error())
			s.Close()
		}
	}
	if err := g.current.Load().retire(sctx); err != nil {
		g.log.Warn("stopping the plugin", "error", err.Error())
	}
	g.log.Info("gateway stopped")
	return runErr
}

// pluginWatch finds the plugin processes of the current keyring that
// have gone since it last looked. A reload swaps in a keyring with a
// plugin of its own and stops the previous one on purpose: those
// processes were not restarted, so a new keyring starts from the
// processes it opened with, and the previous keyring's are forgotten.
type pluginWatch struct {
	kr   *keyring
	pids []int
}

// gone returns the pids the watch last saw for kr that are not in now
// (kr's plugin processes at this moment), and remembers now.
func (w *pluginWatch) gone(kr *keyring, now []int) []int {
	if kr != w.kr {
		w.kr, w.pids = kr, kr.pids
	}
	var out []int
	for _, pid := range w.pids {
		if !slices.Contains(now, pid) {
			out = append(out, pid)
		}
	}
	w.pids = slices.Clone(now)
	return out
}

func metricsAddr(ls []net.Listener) string {
	if len(ls) < 2 {
		return ""
	}
	return ls[1].Addr().String()
}

// serveOHTTP serves a request with the current keyring. A request holds
// its keyring until it is done, so a reload never closes keys under it.
func (g *gatewayCmd) serveOHTTP(w http.ResponseWriter, r *http.Request) {
	for {
		kr := g.current.Load()
		if kr.acquire() {
			defer kr.release()
			if kr.evidence.Handles(r.URL.Path) {
				kr.evidence.ServeHTTP(w, r)
				return
			}
			kr.handler.ServeHTTP(w, r)
			return
		}
	}
}

// reload re-reads the configuration file and swaps in a keyring built from
// it; on any error the gateway goes on with what it has.
func (g *gatewayCmd) reload(ctx context.Context) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.cfgFile == "" {
		g.log.Warn("SIGHUP: no --config file, nothing to reload")
		return
	}
	cfg, err := readGatewayConfig(g.cfgFile)
	if err == nil {
		err = cfg.validate()
	}
	if err == nil && (cfg.Listen != g.cfg.Listen || cfg.MetricsListen != g.cfg.MetricsListen || cfg.Target != g.cfg.Target || cfg.OriginTimeout != g.cfg.OriginTimeout ||
		cfg.ReadHeaderTimeout != g.cfg.ReadHeaderTimeout || cfg.IdleTimeout != g.cfg.IdleTimeout ||
		!slices.Equal(cfg.AllowOrigins, g.cfg.AllowOrigins) || cfg.Path != g.cfg.Path || (cfg.TLSCert == "") != (g.cfg.TLSCert == "") || cfg.ClientCA != g.cfg.ClientCA) {
		err = errors.New("listen, metrics_listen, path, target, allow_origin, origin_timeout, read_header_timeout, idle_timeout, client_ca and whether TLS is on take a restart; change only keys, the other limits and certificate files on reload")
	}
	// Nothing of the new configuration takes effect before all of it
	// has loaded: the certificate and the evidence rate limit change
	// with the keys, or not at all.
	var cert *tls.Certificate
	if err == nil && cfg.TLSCert != "" {
		cert, err = loadCertificate(cfg.TLSCert, cfg.TLSKey)
	}
	var kr *keyring
	if err == nil {
		kr, err = g.openKeyring(ctx, cfg)
	}
	if err != nil {
		g.log.Error("reload failed; serving with the previous configuration", "error", err.Error())
		return
	}
	if cert != nil {
		g.certs.cert.Store(cert)
	}
	// The bucket's rate and size change, not its tokens.
	g.evidenceLimiter.SetLimit(rate.Limit(cfg.EvidenceRate))
	g.evidenceLimiter.SetBurst(cfg.EvidenceBurst)
	old := g.current.Swap(kr)
	g.cfg = cfg
	g.log.Info("reloaded", "keys", len(cfg.Keys), "plugin_pids", kr.client.PIDs())
	go func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.HandlerTimeout)+time.Duration(cfg.ShutdownTimeout))
		defer cancel()
		if err := old.retire(rctx); err != nil {
			g.log.Warn("stopping the previous plugin", "error", err.Error())
		}
	}()
}

func (g *gatewayCmd) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

// readyz answers 200 while every accepted key's plugin answers, 503
// otherwise (with the reason, which names a key id, never a secret).
func (g *gatewayCmd) readyz(w http.ResponseWriter, r *http.Request) {
	g.readyMu.Lock()
	if time.Since(g.readyAt) > g.readyOnce {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		g.readyErr = g.current.Load().ready(ctx)
		cancel()
		g.readyAt = time.Now()
	}
	err := g.readyErr
	g.readyMu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s\n", oneLine(err.Error()))
		return
	}
	io.WriteString(w, "ready\n")
}

// certLoader holds the TLS certificate, replaced on reload.
type certLoader struct {
	cert atomic.Pointer[tls.Certificate]
}

func (l *certLoader) load(certFile, keyFile string) error {
	c, err := loadCertificate(certFile, keyFile)
	if err != nil {
		return err
	}
	l.cert.Store(c)
	return nil
}

// loadCertificate reads the TLS certificate chain and its private key.
func loadCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &c, nil
}

func (l *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return l.cert.Load(), nil }

// tlsConfig is the listener's TLS: TLS 1.2 or later, the certificate of
// the last (re)load, and with --client-ca a client certificate required.
func (g *gatewayCmd) tlsConfig(cfg gatewayConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: g.certs.get, NextProtos: []string{"h2", "http/1.1"}}
	if cfg.ClientCA != "" {
		pem, err := os.ReadFile(cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca %s: no PEM certificate in it", cfg.ClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
