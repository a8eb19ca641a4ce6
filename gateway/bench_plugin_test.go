package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// softhsmProcesses is the number of plugin processes of the SoftHSM row,
// as the gateway command's --processes advises for SoftHSM.
const softhsmProcesses = 2

// pluginRow is the key of a BenchmarkGateway row through the plugin: the
// plugin client that serves it, a twoway.Gateway with it under key id 1,
// and a sender to it.
type pluginRow struct {
	name   string
	client *plugins.Client
	keys   *twoway.Gateway
	sender *twoway.RequestSender
}

// pluginSetups starts the plugin rows of BenchmarkGateway with the real
// twoway-hsm binary. plugin-soft serves env's key from a key file: the
// same key as the gateway row, whose ECDH the plugin's soft backend
// computes as the gateway-soft row's key does (kem's software key), where
// the gateway row decapsulates with circl's HPKE.
// plugin-softhsm serves an X25519 key generated on a fresh SoftHSM2 token,
// whose PIN the plugin reads from a file. Without SoftHSM2 that row is
// left out (with TWOWAY_HSM_REQUIRED=1 the benchmark fails). The plugins
// stop when the benchmark ends.
func pluginSetups(b *testing.B, env *benchEnv) []pluginRow {
	if _, err := processCPU(os.Getpid()); err != nil {
		// Without the plugins' CPU time the rows would say less than
		// they seem to.
		b.Logf("the plugin rows are left out: the CPU time of another process is unknown here: %v", err)
		return nil
	}
	bin := pluginBinary(b)
	pem, err := kem.MarshalPrivateKeyPEM(env.softKey)
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(b.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem, 0o600); err != nil {
		b.Fatal(err)
	}
	rows := []pluginRow{startPluginRow(b, "plugin-soft", plugins.Config{Path: bin, Keys: []string{"soft:file=" + keyFile}})}

	if _, err := softhsm.FindModule(""); err != nil {
		if testenv.Required() {
			b.Fatalf("SoftHSM2 for the plugin-softhsm row: %v (%s=1, so this is a failure, not a skip)", err, testenv.RequiredEnv)
		}
		b.Logf("the plugin-softhsm row is left out: %v", err)
		return rows
	}
	tok := testenv.SoftHSM(b)
	ref := tok.URI("id=%01", "object=bench")
	create := exec.Command(bin, "keys", "create", ref, "--kem", "x25519", "--json")
	create.Env = append(os.Environ(), tok.Environ()...)
	out, err := create.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		b.Fatalf("twoway-hsm keys create: %v\n%s%s", err, out, stderr)
	}
	var made struct{ Ref string }
	if err := json.Unmarshal(out, &made); err != nil || made.Ref == "" {
		b.Fatalf("twoway-hsm keys create --json: %q: %v", out, err)
	}
	return append(rows, startPluginRow(b, "plugin-softhsm", plugins.Config{Path: bin, Keys: []string{made.Ref},
		Env: tok.Environ(), Processes: softhsmProcesses}))
}

// startPluginRow starts a plugin client of cfg, serving one X25519 key,
// and puts its key in a twoway.Gateway.
func startPluginRow(b *testing.B, name string, cfg plugins.Config) pluginRow {
	cfg.Logger = quietLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := plugins.NewClientContext(ctx, cfg)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	b.Cleanup(func() {
		if err := c.Close(); err != nil {
			b.Errorf("%s: Close: %v", name, err)
		}
	})
	key, err := c.Key(ctx, cfg.Keys[0])
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	if key.KEM() != kem.DHKEMX25519HKDFSHA256 {
		b.Fatalf("%s: the plugin serves a %v key, not X25519", name, key.KEM())
	}
	keys := twoway.NewGateway(nil)
	if err := keys.AddKey(1, key, testSuite); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	pub, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(key.PublicKeyBytes())
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	sender, err := twoway.NewRequestSender(benchSuite, 1, pub, nil)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	if n := len(c.PIDs()); n != max(cfg.Processes, 1) {
		b.Fatalf("%s: %d plugin processes running", name, n)
	}
	return pluginRow{name: name, client: c, keys: keys, sender: sender}
}

// pluginBin is the twoway-hsm binary the plugin rows run, built once per
// test process into a directory that TestMain removes.
var pluginBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func pluginBinary(b *testing.B) string {
	pluginBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "twoway-gateway-bench-")
		if err != nil {
			pluginBin.err = err
			return
		}
		pluginBin.dir = dir
		path := filepath.Join(dir, "twoway-hsm")
		build := exec.Command("go", "build", "-o", path, "github.com/twoway-hsm/twoway-hsm/cmd/twoway-hsm")
		if out, err := build.CombinedOutput(); err != nil {
			pluginBin.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		pluginBin.path = path
	})
	if pluginBin.err != nil {
		b.Fatalf("building the plugin binary: %v", pluginBin.err)
	}
	return pluginBin.path
}

// removePluginBinary removes what pluginBinary built.
func removePluginBinary() {
	if pluginBin.dir != "" {
		os.RemoveAll(pluginBin.dir)
	}
}
