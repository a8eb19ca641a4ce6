package tpm2store

import (
	"context"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/attest/tpm2attest"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Key is a TPM key opened by the store: a *tpm2.Key (kem.Exchanger,
// crypto/ecdh.KeyExchanger) that is also a keystore.Attester, whose
// evidence and credential activation use the key's own TPM connection.
type Key struct {
	*tpm2.Key
}

// Attest implements keystore.Attester (tpm2attest.Collect, with the
// intermediates the TPM holds).
func (k *Key) Attest(ctx context.Context, cfg twoway.KeyConfig, nonce []byte) (*attest.Evidence, error) {
	return tpm2attest.Collect(ctx, k.Key, cfg, nonce, nil)
}

// Activate implements keystore.Attester (tpm2attest.Activate with the
// key's TPM).
func (k *Key) Activate(ctx context.Context, c *attest.Challenge) (*attest.Answer, error) {
	t, err := k.Key.TPM()
	if err != nil {
		return nil, err
	}
	defer t.Close()
	return tpm2attest.Activate(ctx, t, c)
}

var _ keystore.Attester = (*Key)(nil)
