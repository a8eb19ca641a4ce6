// Package plugins runs HPKE receiver keys in a separate plugin process, so
// that a server can open requests and seal responses while the private key
// never enters its memory.
//
// The plugin protocol, version [ProtocolVersion], has three calls:
// Describe (the keys a plugin serves and their public keys), ECDH (the
// Diffie-Hellman step of a DHKEM key) and Decapsulate (for KEMs that are
// not Diffie-Hellman based). github.com/hashicorp/go-plugin starts the
// plugin, carries Describe over gRPC (proto/kemplugin/v2/kemplugin.proto)
// and its logs, and watches its life. ECDH and Decapsulate, one per
// request, travel on the data channel: two unix socket pairs, one for each
// direction, that the host creates and whose other ends the plugin
// inherits at exec (descriptors 3 and 4, see [DataFDEnv]), with no path
// and no listener, carrying fixed binary frames (frame.go).
// Nothing else crosses the boundary: no call takes or returns private key
// material, and none creates or deletes keys.
//
// # Host side
//
// [NewClient] starts the plugin binary (usually `twoway-hsm plugin --key
// REF ...`, see [Config]) and [Client.Key] hands out keys that implement
// [kem.PrivateKey], [kem.Exchanger] and, for P-256, P-384, P-521 and X25519,
// crypto/ecdh.KeyExchanger, so they go straight into
// twoway.NewRequestReceiverForKey and crypto/hpke.NewDHKEMPrivateKey:
//
//	client, err := plugins.NewClient(plugins.Config{
//		Path:     "/usr/local/bin/twoway-hsm",
//		Keys:     []string{"pkcs11:token=gw;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:GW_PIN"},
//		Env:      []string{"GW_PIN=" + pin, "SOFTHSM2_CONF=/etc/softhsm2.conf"},
//		Checksum: sum, // SHA-256 of the binary, from a trusted source
//	})
//	defer client.Close()
//	key, err := client.Key(ctx, "pkcs11:token=gw;id=%01")
//	receiver, err := twoway.NewRequestReceiverForKey(keyID, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
//
// The client verifies the binary's SHA-256 before every start when a
// checksum is given, talks to the plugin over a unix socket in a private
// directory with mutual TLS (go-plugin's AutoMTLS) and over the data
// channel, whose descriptor only the two processes hold, gives it only the
// environment in [Config.Env], ties its life to the host's (the plugin gets
// SIGKILL when the host dies, on Linux), and restarts it after a crash with
// a bounded exponential backoff. Calls that a crash interrupts fail at once
// with an error wrapping [ErrUnavailable]; the next call starts a new
// plugin. With [Config.Processes] > 1 the client runs several plugin
// processes and sends each call to the least busy one, for backends such as
// SoftHSM that serialise work inside one process.
//
// # Plugin side
//
// [Serve] serves a [Backend] to the host that started the process: the
// go-plugin handshake is the only thing written to stdout, and logs go to
// stderr as JSON records in hclog's format ([NewPluginLogHandler]), which
// the host forwards to its log/slog logger. The twoway-hsm command's
// `plugin` subcommand is such a program; package plugins/keyset provides
// the Backend it serves.
package plugins
