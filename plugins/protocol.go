package plugins

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	kempluginv2 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v2"
)

// ProtocolVersion is the version of the plugin protocol this package
// speaks (go-plugin's application protocol version). Version 3 is
// kemplugin.v2's Describe, Attest and Activate on gRPC, and the data
// channel (frame.go) for the per-request calls: two socket pairs, one for
// each direction, which the host creates and passes to the plugin at exec
// (DataFDEnv). Version 2 had the same frames on one socket pair for both
// directions; version 1 carried the calls on gRPC. Hosts and plugins of
// different versions refuse each other (a version-2 plugin exits at once,
// not finding the descriptor variable it knows).
const ProtocolVersion = 3

// PluginName is the name under which a plugin process serves its Backend
// (go-plugin's plugin set key).
const PluginName = "kem"

// Handshake is the go-plugin handshake a host and a plugin must share. The
// magic cookie is not a secret: it only tells a program that it was started
// as a plugin rather than by hand.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "TWOWAY_HSM_PLUGIN",
	MagicCookieValue: "5c1f0e9b7a3d42c8b6e0d4a1f39c7e25",
}

// VersionedPlugins returns the plugin sets of every protocol version this
// package speaks, keyed by version, for go-plugin's ServeConfig and
// ClientConfig. impl is the Backend a plugin serves; hosts pass nil.
func VersionedPlugins(impl Backend) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &GRPCPlugin{Impl: impl}},
	}
}

// GRPCPlugin is the go-plugin plugin of the protocol's control part: on
// the plugin side it registers a [GRPCServer] for Impl, on the host side it
// returns a [GRPCClient]. It supports only gRPC (not net/rpc).
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the Backend served; nil on the host side.
	Impl Backend
}

// GRPCServer registers the KEMPlugin service for p.Impl.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return fmt.Errorf("plugins: no backend to serve")
	}
	kempluginv2.RegisterKEMPluginServer(s, &GRPCServer{Impl: p.Impl})
	return nil
}

// GRPCClient returns a [GRPCClient] on conn: Describe, Attest and
// Activate, the control part (the per-request calls go over the data channel, which [Client]
// sets up).
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &GRPCClient{client: kempluginv2.NewKEMPluginClient(conn)}, nil
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)
