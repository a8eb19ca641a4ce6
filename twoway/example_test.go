package twoway_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"strings"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The walkthrough of the README: a client seals a request to a gateway's
// public key, the gateway opens it and streams back a chunked response bound
// to the request, and the client opens the response.
func Example() {
	suite := hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	const keyID = 1
	gatewayPub, gatewayPriv, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().GenerateKeyPair()
	if err != nil {
		panic(err)
	}

	// client
	sender, err := twoway.NewRequestSender(suite, keyID, gatewayPub, rand.Reader)
	if err != nil {
		panic(err)
	}
	reqSealer, err := sender.NewRequestSealer(strings.NewReader("a secret"), []byte("app/req"))
	if err != nil {
		panic(err)
	}
	body, err := io.ReadAll(reqSealer) // or stream it as a request body
	if err != nil {
		panic(err)
	}

	// server
	receiver, err := twoway.NewRequestReceiver(suite, keyID, gatewayPriv, rand.Reader)
	if err != nil {
		panic(err)
	}
	reqOpener, err := receiver.NewRequestOpener(bytes.NewReader(body), []byte("app/req"))
	if err != nil {
		panic(err)
	}
	plaintext, err := io.ReadAll(reqOpener)
	if err != nil {
		panic(err)
	}
	fmt.Printf("server got %q\n", plaintext)
	source := strings.NewReader("an answer, streamed in chunks")
	respSealer, err := reqOpener.NewResponseSealer(source, []byte("app/resp"), twoway.EnableChunking())
	if err != nil {
		panic(err)
	}
	respBody, err := io.ReadAll(respSealer) // or stream it back
	if err != nil {
		panic(err)
	}

	// client again
	respOpener, err := reqSealer.NewResponseOpener(bytes.NewReader(respBody), []byte("app/resp"), twoway.EnableChunking())
	if err != nil {
		panic(err)
	}
	answer, err := io.ReadAll(respOpener)
	if err != nil {
		panic(err)
	}
	fmt.Printf("client got %q\n", answer)
	// Output:
	// server got "a secret"
	// client got "an answer, streamed in chunks"
}

// A one-to-many request: sealed once, its key wrapped for each receiver,
// and each receiver's response opened with that receiver's opener.
func ExampleMultiRequestSender() {
	suite := hpke.NewSuite(hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	scheme := hpke.KEM_P256_HKDF_SHA256.Scheme()
	pubA, privA, _ := scheme.GenerateKeyPair()
	pubB, privB, _ := scheme.GenerateKeyPair()

	sealer, err := twoway.NewMultiRequestSender(suite, nil).NewRequestSealer(strings.NewReader("to everyone"), []byte("app/req"))
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(sealer)

	for _, r := range []struct {
		keyID byte
		pub   circlkem.PublicKey
		priv  circlkem.PrivateKey
	}{{1, pubA, privA}, {2, pubB, privB}} {
		encapKey, openResponse, err := sealer.EncapsulateKey(r.keyID, r.pub)
		if err != nil {
			panic(err)
		}
		// receiver r, given body and its encapKey
		receiver, err := twoway.NewMultiRequestReceiver(suite, r.keyID, r.priv, nil)
		if err != nil {
			panic(err)
		}
		opener, err := receiver.NewRequestOpener(encapKey, bytes.NewReader(body), []byte("app/req"))
		if err != nil {
			panic(err)
		}
		got, _ := io.ReadAll(opener)
		respSealer, _ := opener.NewResponseSealer(strings.NewReader(fmt.Sprintf("receiver %d heard %q", r.keyID, got)), []byte("app/resp"))
		resp, _ := io.ReadAll(respSealer)
		// back at the sender
		respOpener, err := openResponse(bytes.NewReader(resp), []byte("app/resp"))
		if err != nil {
			panic(err)
		}
		answer, _ := io.ReadAll(respOpener)
		fmt.Println(string(answer))
	}
	// Output:
	// receiver 1 heard "to everyone"
	// receiver 2 heard "to everyone"
}

// A Gateway holds several keys and publishes their configurations; keys are
// rotated by adding the new one, publishing, then removing the old one.
func ExampleGateway() {
	g := twoway.NewGateway(nil)
	suites := []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}}
	oldKey, _ := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	newKey, _ := kem.GenerateKey(kem.DHKEMP256HKDFSHA256)
	g.AddKey(1, oldKey, suites...)
	g.AddKey(2, newKey, suites...) // publish both while clients move over
	configs, _ := twoway.ParseKeyConfigs(must(g.MarshalKeyConfigs()))
	fmt.Println(len(configs), "keys published")
	g.RemoveKey(1)
	configs, _ = twoway.ParseKeyConfigs(must(g.MarshalKeyConfigs()))
	fmt.Println(len(configs), "key published, id", configs[0].KeyID)
	// Output:
	// 2 keys published
	// 1 key published, id 2
}
