package plugins

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// maxMessageSize bounds what a plugin accepts in one gRPC request
// (Describe has no fields; Attest and Activate carry at most a key name,
// a key configuration and a nonce, or an 8 KiB challenge).
const maxMessageSize = 64 << 10

// StartedByHost reports whether this process was started by a plugin host
// (its environment carries the handshake's magic cookie). A plugin program
// run by hand should say what it is for and exit instead of serving.
func StartedByHost() bool {
	return os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
}

// Serve serves b to the host that started this process and returns when
// the host shuts the plugin down (or exits the process when the handshake
// fails or the host passed no data channel). It writes nothing to stdout
// but go-plugin's handshake line; logger (built on [NewPluginLogHandler]
// over the original stderr, so the host can parse the records) receives
// go-plugin's records. Each call's context carries the host's deadline and
// is cancelled when the host gives up; b must honour it. When Serve
// returns, no call of b is running.
//
// b's Describe is called once, before the handshake: the keys it lists,
// in that order, are the ones served (the data channel names keys by
// their index in it).
//
// If the host process goes away without stopping the plugin (it was
// killed, and no parent-death signal was set up), Serve notices within a
// second and exits the process.
func Serve(b Backend, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	go watchParent(logger, os.Getppid())
	end, err := dataChannelFromEnv()
	if err != nil {
		logger.Error("plugins: no data channel", "error", err.Error())
		os.Exit(1)
	}
	desc, err := b.Describe(context.Background())
	if err != nil {
		logger.Error("plugins: describe", "error", err.Error())
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ds, err := newDataServer(ctx, b, desc, end)
	if err != nil {
		logger.Error("plugins: data channel", "error", err.Error())
		os.Exit(1)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := ds.serve(); err != nil {
			logger.Error("plugins: data channel ended", "error", err.Error())
		}
	}()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: VersionedPlugins(snapshot{b, desc}),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMessageSize))...)
		},
		Logger: NewHCLogger(logger),
	})
	ds.stop()
	<-served
}

// snapshot is a Backend whose Describe returns what the plugin's Describe
// returned when it started, so that the host's key indexes and the data
// channel's agree.
type snapshot struct {
	Backend
	desc *Description
}

func (s snapshot) Describe(ctx context.Context) (*Description, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d := &Description{Plugin: s.desc.Plugin, Keys: make([]KeyInfo, len(s.desc.Keys))}
	for i, k := range s.desc.Keys {
		k.PublicKey = append([]byte(nil), k.PublicKey...)
		d.Keys[i] = k
	}
	return d, nil
}

// watchParent exits the process when its parent changes, i.e. the host
// died and the process was re-parented.
func watchParent(logger *slog.Logger, ppid int) {
	if ppid <= 1 {
		return
	}
	for range time.Tick(250 * time.Millisecond) {
		if os.Getppid() != ppid {
			logger.Error("plugin host exited; exiting", "host_pid", ppid)
			os.Exit(3)
		}
	}
}

// KeyName returns the name a plugin serves the key of a reference under:
// the reference without its query part, which holds how to reach the key
// (module path, transport, where its PIN is) rather than which key it is.
// "pkcs11:token=gw;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so"
// is served as "pkcs11:token=gw;id=%01".
func KeyName(ref string) string {
	name, _, _ := strings.Cut(ref, "?")
	return name
}
