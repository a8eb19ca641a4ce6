package kem_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"io"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// A receiver built from a key it can only use, not read: here a
// crypto/ecdh key behind ecdh.KeyExchanger, as a hardware key would be.
func ExampleFromKeyExchanger() {
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	var exchanger ecdh.KeyExchanger = priv // a PKCS#11, TPM or plugin key in production

	key, err := kem.FromKeyExchanger(exchanger)
	if err != nil {
		panic(err)
	}
	receiver, err := twoway.NewRequestReceiverForKey(1, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
	if err != nil {
		panic(err)
	}

	// A client that knows the public key seals a request.
	pub, _ := hpke.KEM_P256_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(key.PublicKeyBytes())
	suite := hpke.NewSuite(hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	sender, _ := twoway.NewRequestSender(suite, 1, pub, nil)
	sealer, _ := sender.NewRequestSealer(bytes.NewReader([]byte("hello, hardware")), []byte("app/req"))
	body, _ := io.ReadAll(sealer)

	opener, err := receiver.NewRequestOpener(bytes.NewReader(body), []byte("app/req"))
	if err != nil {
		panic(err)
	}
	msg, _ := io.ReadAll(opener)
	fmt.Println(string(msg), key.KEM())
	// Output: hello, hardware DHKEM(P-256, HKDF-SHA256)
}
