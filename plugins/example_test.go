package plugins_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// A server loads the twoway-hsm plugin, builds a receiver from a key the
// plugin serves, and answers a request. The key here is a development key
// file (soft:); in production it is a pkcs11: or tpm2: reference, and
// the PIN goes into Env.
func Example() {
	ctx := context.Background()

	// Operator: a development key file (use `pkcs11:` or `tpm2:` keys in
	// production: then no process but the token or TPM holds the key).
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	devKey, _ := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	pemBytes, _ := kem.MarshalPrivateKeyPEM(devKey)
	keyFile := filepath.Join(dir, "gw.pem")
	os.WriteFile(keyFile, pemBytes, 0o600)
	ref := "soft:file=" + keyFile

	// Server: start the plugin and take the key from it.
	client, err := plugins.NewClient(plugins.Config{
		Path: pluginBin, // the twoway-hsm binary
		Keys: []string{ref},
		// Env: []string{"GW_PIN=...", "SOFTHSM2_CONF=..."},
		// Checksum: the binary's SHA-256, from a trusted source,
	})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	key, err := client.Key(ctx, ref)
	if err != nil {
		panic(err)
	}
	const keyID = 1
	receiver, err := twoway.NewRequestReceiverForKey(keyID, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
	if err != nil {
		panic(err)
	}

	// Client: seal a request to the published public key.
	suite := hpke.NewSuite(hpke.KEM(key.KEM()), hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	pub, _ := hpke.KEM(key.KEM()).Scheme().UnmarshalBinaryPublicKey(key.PublicKeyBytes())
	sender, _ := twoway.NewRequestSender(suite, keyID, pub, nil)
	reqSealer, _ := sender.NewRequestSealer(strings.NewReader("a secret"), []byte("app/req"))
	body, _ := io.ReadAll(reqSealer)

	// Server: open the request (the plugin performs the key's
	// Diffie-Hellman step) and seal the response.
	reqOpener, err := receiver.NewRequestOpenerContext(ctx, bytes.NewReader(body), []byte("app/req"))
	if err != nil {
		panic(err)
	}
	plaintext, _ := io.ReadAll(reqOpener)
	fmt.Printf("server got %q from a %s key\n", plaintext, key.Backend())
	respSealer, _ := reqOpener.NewResponseSealer(strings.NewReader("an answer"), []byte("app/resp"), twoway.EnableChunking())
	respBody, _ := io.ReadAll(respSealer)

	// Client: open the response.
	respOpener, _ := reqSealer.NewResponseOpener(bytes.NewReader(respBody), []byte("app/resp"), twoway.EnableChunking())
	answer, _ := io.ReadAll(respOpener)
	fmt.Printf("client got %q\n", answer)
	// Output:
	// server got "a secret" from a soft key
	// client got "an answer"
}
