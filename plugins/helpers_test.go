package plugins_test

import (
	"bytes"
	"context"
	"crypto/rand"
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
	pk, err := circlPubErr(id, pub)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func circlPubErr(id kem.ID, pub []byte) (circlkem.PublicKey, error) {
	return hpke.KEM(id).Scheme().UnmarshalBinaryPublicKey(pub)
}

// messageOpts returns the options of the test messages: chunks of up to
// 1024 bytes when chunked.
func messageOpts(chunked bool) []twoway.Option {
	if !chunked {
		return nil
	}
	return []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(1024)}
}

// roundTrip sends one one-to-one request to key through a twoway sender
// and answers it on the receiving side, checking both plaintexts.
func roundTrip(ctx context.Context, keyID byte, key kem.PrivateKey, pub circlkem.PublicKey, chunked bool, size int) error {
	suite := hpke.NewSuite(hpke.KEM(key.KEM()), hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	opts := messageOpts(chunked)
	req := make([]byte, size)
	rand.Read(req)
	sender, err := twoway.NewRequestSender(suite, keyID, pub, nil)
	if err != nil {
		return err
	}
	sealer, err := sender.NewRequestSealer(bytes.NewReader(req), []byte("app/req"), opts...)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(sealer)
	if err != nil {
		return err
	}
	receiver, err := twoway.NewRequestReceiverForKey(keyID, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
	if err != nil {
		return err
	}
	opener, err := receiver.NewRequestOpenerContext(ctx, bytes.NewReader(body), []byte("app/req"), opts...)
	if err != nil {
		return err
	}
	return answer(opener, req, sealer.NewResponseOpener, append([]byte("answer: "), req[:min(len(req), 64)]...), opts)
}

// multiRoundTrip sends one one-to-many request to several keys and has
// each answer.
func multiRoundTrip(ctx context.Context, keys []kem.PrivateKey, pubs []circlkem.PublicKey, chunked bool, size int) error {
	suite := hpke.NewSuite(hpke.KEM(keys[0].KEM()), hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	opts := messageOpts(chunked)
	req := make([]byte, size)
	rand.Read(req)
	sealer, err := twoway.NewMultiRequestSender(suite, nil).NewRequestSealer(bytes.NewReader(req), []byte("app/req"), opts...)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(sealer)
	if err != nil {
		return err
	}
	for i, key := range keys {
		keyID := byte(i + 1)
		encapKey, openResponse, err := sealer.EncapsulateKey(keyID, pubs[i])
		if err != nil {
			return err
		}
		receiver, err := twoway.NewMultiRequestReceiverForKey(keyID, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
		if err != nil {
			return err
		}
		opener, err := receiver.NewRequestOpenerContext(ctx, encapKey, bytes.NewReader(body), []byte("app/req"), opts...)
		if err != nil {
			return fmt.Errorf("receiver %d: %w", i, err)
		}
		if err := answer(opener, req, openResponse, []byte(fmt.Sprintf("receiver %d answers", i)), opts); err != nil {
			return fmt.Errorf("receiver %d: %w", i, err)
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
