package plugins

import (
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// maxMessageSize bounds what a plugin accepts in one request. The largest
// legitimate request is a Decapsulate with an ML-KEM-1024 ciphertext
// (1568 bytes) plus a key name.
const maxMessageSize = 64 << 10

// windowSize is the fixed HTTP/2 flow-control window of the connection
// between host and plugin, set on both sides. A fixed window turns off
// grpc-go's bandwidth estimation, which otherwise sends a PING (and gets an
// ack) for nearly every message received: four extra frames, writes and
// wake-ups per call, on a connection whose messages are a few hundred
// bytes. At 1 MiB a window update is due only every few thousand calls.
const windowSize = 1 << 20

// StartedByHost reports whether this process was started by a plugin host
// (its environment carries the handshake's magic cookie). A plugin program
// run by hand should say what it is for and exit instead of serving.
func StartedByHost() bool {
	return os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
}

// Serve serves b to the host that started this process and returns when
// the host shuts the plugin down (or exits the process when the handshake
// fails). It writes nothing to stdout but go-plugin's handshake line; logger
// (built on [NewPluginLogHandler] over the original stderr, so the host
// can parse the records) receives go-plugin's records. Each call's context
// carries the host's deadline and is cancelled when the host gives up;
// b must honour it.
//
// If the host process goes away without stopping the plugin (it was
// killed, and no parent-death signal was set up), Serve notices within a
// second and exits the process.
func Serve(b Backend, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	go watchParent(logger, os.Getppid())
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: VersionedPlugins(b),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMessageSize),
				grpc.StaticStreamWindowSize(windowSize), grpc.StaticConnWindowSize(windowSize))...)
		},
		Logger: NewHCLogger(logger),
	})
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
