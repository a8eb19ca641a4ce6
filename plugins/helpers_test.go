package plugins_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// testLogger logs to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// softKey writes a new software key of the KEM to a file and returns its
// reference and the key.
func softKey(t testing.TB, id kem.ID) (string, kem.PrivateKey) {
	t.Helper()
	k, err := kem.GenerateKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return writeKeyFile(t, k), k
}

// writeKeyFile writes a software key to a file and returns its reference.
func writeKeyFile(t testing.TB, k kem.PrivateKey) string {
	t.Helper()
	b, err := kem.MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	writeFile(t, path, b)
	return "soft:file=" + path
}

// newClient starts a plugin client and closes it when the test ends.
func newClient(t testing.TB, cfg plugins.Config) *plugins.Client {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = pluginBin
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := plugins.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// circlPub returns the circl public key for a key's public key bytes.
func circlPub(t testing.TB, id kem.ID, pub []byte) circlkem.PublicKey {
	t.Helper()
	pk, err := hpke.KEM(id).Scheme().UnmarshalBinaryPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// roundTrips runs one round trip of each shape (internal/roundtrip:
// one-to-one and one-to-many, chunked and not) with key, with requests and
// responses of size bytes, checking both plaintexts.
func roundTrips(ctx context.Context, key kem.PrivateKey, size int) error {
	rt, err := roundtrip.New(key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, size)
	if err != nil {
		return err
	}
	for s := range roundtrip.NumShapes {
		if err := rt.Run(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// answer reads the rest of a request from opener and checks that it is
// req, then seals resp as the response, opens it with openResponse (the
// client's side) and checks it.
func answer(opener *twoway.RequestOpener, req []byte, openResponse twoway.ResponseOpenerFunc, resp []byte, opts []twoway.Option) error {
	got, err := io.ReadAll(opener)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, req) {
		return fmt.Errorf("request plaintext differs")
	}
	respSealer, err := opener.NewResponseSealer(bytes.NewReader(resp), []byte("app/resp"), opts...)
	if err != nil {
		return err
	}
	respBody, err := io.ReadAll(respSealer)
	if err != nil {
		return err
	}
	respOpener, err := openResponse(bytes.NewReader(respBody), []byte("app/resp"), opts...)
	if err != nil {
		return err
	}
	gotResp, err := io.ReadAll(respOpener)
	if err != nil {
		return err
	}
	if !bytes.Equal(gotResp, resp) {
		return fmt.Errorf("response plaintext differs")
	}
	return nil
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// quietLogger discards records below warnings.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// pinOf returns the PIN that a backendKeys passes to the plugin.
func pinOf(bk backendKeys) string {
	for _, e := range bk.env {
		if v, ok := strings.CutPrefix(e, pinEnv+"="); ok {
			return v
		}
	}
	return ""
}
