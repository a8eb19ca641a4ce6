package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/twoway-hsm/twoway-hsm/plugins"
	kempluginv1 "github.com/twoway-hsm/twoway-hsm/plugins/internal/barepb/kemplugin/v1"
	"github.com/twoway-hsm/twoway-hsm/plugins/keyset"
)

// The "bare" plugin is the reference row of the benchmarks: the transport
// this package used before the data channel (go-plugin, gRPC over a unix
// socket with AutoMTLS, the kemplugin.v1 Session stream and messages, a
// fixed HTTP/2 window, one P in the plugin process) serving the same
// backend keys (keyset), with nothing else. Its server answers
// each Session message inline on the stream's goroutine, and its host side
// is one goroutine per stream doing Send then Recv: no call ids, no
// goroutine per call, no deadlines, no cancellation, no restart. Whatever
// this package's plugin costs beyond it is this package's own. It is the
// test binary re-executed, so benchmarks compare it fairly only when built
// as the plugin is (no -race, no -cover).

// bareProtocolVersion is the go-plugin protocol version of the bare
// plugin: kemplugin.v1's.
const bareProtocolVersion = 1

// bareWindowSize is the fixed HTTP/2 window of the bare plugin's
// connection: a fixed window turns off grpc-go's bandwidth estimation,
// which otherwise sends a PING (and gets an ack) for nearly every message.
const bareWindowSize = 1 << 20

// barePlugin is the go-plugin plugin of the bare server and client.
type barePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	set *keyset.Set // plugin side only
}

func (p *barePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	kempluginv1.RegisterKEMPluginServer(s, &bareServer{set: p.set})
	return nil
}

func (p *barePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return kempluginv1.NewKEMPluginClient(conn), nil
}

// bareServer serves Session only, inline.
type bareServer struct {
	kempluginv1.UnimplementedKEMPluginServer
	set *keyset.Set
}

func (s *bareServer) Session(stream kempluginv1.KEMPlugin_SessionServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		e := req.GetEcdh()
		resp := &kempluginv1.SessionResponse{Id: req.GetId()}
		dh, err := s.set.ECDH(ctx, e.GetKey(), e.GetPeerPublicKey())
		if err != nil {
			resp.Code, resp.Message = 13, err.Error()
		}
		resp.Result = dh
		if err := stream.Send(resp); err != nil {
			return err
		}
		clear(dh)
	}
}

// runBareHelper is the plugin side of the bare plugin: the test binary
// re-executed by go-plugin, serving the keys of its configuration.
func runBareHelper() int {
	var cfg helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(helperConfigEnv)), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "bare plugin: config: %v\n", err)
		return 1
	}
	// One P, as twoway-hsm's plugin runs by default (the best this
	// transport does here; see cmd/twoway-hsm's plugin command), unless
	// GOMAXPROCS is set (TWOWAY_BENCH_PLUGIN_ENV sets it for both).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	set, err := keyset.Open(context.Background(), cfg.Refs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bare plugin: %v\n", err)
		return 1
	}
	defer set.Close()
	hs := plugins.Handshake
	hs.ProtocolVersion = bareProtocolVersion
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  hs,
		VersionedPlugins: map[int]plugin.PluginSet{bareProtocolVersion: {plugins.PluginName: &barePlugin{set: set}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.StaticStreamWindowSize(bareWindowSize), grpc.StaticConnWindowSize(bareWindowSize))...)
		},
		Logger: hclog.NewNullLogger(),
	})
	return 0
}

// bareClient is the host side of one bare plugin process.
type bareClient struct {
	pc     *plugin.Client
	client kempluginv1.KEMPluginClient
}

// startBare starts a bare plugin process serving bk's keys; it is killed
// when the test ends.
func startBare(t testing.TB, bk backendKeys) *bareClient {
	t.Helper()
	js, err := json.Marshal(helperConfig{Refs: bk.refs})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Like the real plugin: only the environment it is given (not this
	// process's GOMAXPROCS, GODEBUG or GOGC), with TMPDIR for its socket.
	cmd.Env = append(append(append([]string{"TMPDIR=" + os.TempDir()}, bk.env...), benchEnv()...),
		helperEnv+"=bare", helperConfigEnv+"="+string(js))
	hs := plugins.Handshake
	hs.ProtocolVersion = bareProtocolVersion
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  hs,
		VersionedPlugins: map[int]plugin.PluginSet{bareProtocolVersion: {plugins.PluginName: &barePlugin{}}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		Logger:           hclog.NewNullLogger(),
		GRPCDialOptions: []grpc.DialOption{grpc.WithStaticStreamWindowSize(bareWindowSize),
			grpc.WithStaticConnWindowSize(bareWindowSize)},
	})
	t.Cleanup(pc.Kill)
	cp, err := pc.Client()
	if err != nil {
		t.Fatalf("bare plugin: %v", err)
	}
	raw, err := cp.Dispense(plugins.PluginName)
	if err != nil {
		t.Fatalf("bare plugin: %v", err)
	}
	return &bareClient{pc: pc, client: raw.(kempluginv1.KEMPluginClient)}
}

// bareStream is one Session stream of a bare plugin, used by one goroutine
// at a time.
type bareStream struct {
	stream kempluginv1.KEMPlugin_SessionClient
	key    string
}

// stream opens a Session stream for calls with the key of ref.
func (c *bareClient) stream(t testing.TB, ref string) *bareStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.client.Session(ctx)
	if err != nil {
		t.Fatalf("bare plugin: session: %v", err)
	}
	return &bareStream{stream: s, key: plugins.KeyName(ref)}
}

// ECDH makes one call on the stream and waits for its answer.
func (s *bareStream) ECDH(peer []byte) ([]byte, error) {
	req := &kempluginv1.SessionRequest{Call: &kempluginv1.SessionRequest_Ecdh{Ecdh: &kempluginv1.ECDHRequest{Key: s.key, PeerPublicKey: peer}}}
	if err := s.stream.Send(req); err != nil {
		return nil, err
	}
	r, err := s.stream.Recv()
	if err != nil {
		return nil, err
	}
	if r.GetCode() != 0 {
		return nil, fmt.Errorf("bare plugin: %s", r.GetMessage())
	}
	return r.GetResult(), nil
}

// TestBarePlugin checks that the limit the benchmarks measure works: the
// bare plugin answers with the same DH output as the key in process.
func TestBarePlugin(t *testing.T) {
	bk := softKeys(t, nil)
	s := startBare(t, bk).stream(t, bk.refs[0])
	local, err := keyset.Open(context.Background(), bk.refs)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	peer := peers(t, 1)[0]
	got, err := s.ECDH(peer)
	if err != nil {
		t.Fatal(err)
	}
	want, err := local.ECDH(context.Background(), plugins.KeyName(bk.refs[0]), peer)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 32 || string(got) != string(want) {
		t.Fatalf("bare plugin DH output %x, in process %x", got, want)
	}
}
