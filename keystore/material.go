package keystore

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// Material is a private key read for import: its KEM and its bytes in
// HPKE's SerializePrivateKey form (the scalar for DHKEMs, the seed for
// ML-KEM and X-Wing). Wipe zeroes it.
type Material struct {
	KEM    kem.ID
	Secret []byte
}

// Wipe zeroes the key bytes. It is safe on a nil *Material.
func (m *Material) Wipe() {
	if m != nil {
		clear(m.Secret)
	}
}

// ErrMaterial is wrapped by the errors of ReadMaterial about the file's
// content (not about reading it).
var ErrMaterial = errors.New("keystore: not a private key for import")

// ErrKEMRequired is returned (with ErrMaterial) for a raw key file read
// without its KEM: the file cannot say which KEM it is for.
var ErrKEMRequired = errors.New("keystore: the KEM of a raw private key must be given")

// MaxKeyFile bounds the key files the stores and ReadMaterial read.
const MaxKeyFile = 64 << 10

// TPMKeyPEMType is the PEM type of a TPM key file (TSS2 PRIVATE KEY).
const TPMKeyPEMType = "TSS2 PRIVATE KEY"

// ReadMaterial reads a private key file for import: PKCS#8 ("PRIVATE
// KEY": P-256, P-384, P-521, X25519, X448), SEC 1 ("EC PRIVATE KEY"), a
// software key file ("HPKE PRIVATE KEY", any KEM), or the raw private key
// (exactly its bytes; then want is required). want, when not 0, must match
// the file's KEM. Every copy of the key bytes this function makes, except
// the one it returns, is zeroed.
func ReadMaterial(path string, want kem.ID) (*Material, error) {
	b, err := ReadSmallFile(path)
	defer clear(b)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		if want == 0 {
			return nil, fmt.Errorf("%w: %w: %s is not a PEM key file; for a raw private key (exactly its bytes) give its KEM", ErrMaterial, ErrKEMRequired, path)
		}
		k, err := kem.NewPrivateKey(want, b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not a raw %v private key (%d bytes): %w", ErrMaterial, path, want, len(b), err)
		}
		secret, err := kem.MarshalPrivateKey(k)
		if err != nil {
			return nil, err
		}
		return &Material{KEM: want, Secret: secret}, nil
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s: no valid PEM block", ErrMaterial, path)
	}
	clear(blk.Bytes)
	switch blk.Type {
	case TPMKeyPEMType:
		return nil, fmt.Errorf("%w: %s is a TPM key file: its key is wrapped for one TPM and cannot be imported; use it as tpm2:file=%s", ErrMaterial, path, path)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%w: %s is an encrypted PKCS#8 key: decrypt it first (openssl pkey -in %s), ideally onto a tmpfs, and remove the copy afterwards", ErrMaterial, path, path)
	}
	k, err := kem.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMaterial, path, err)
	}
	if want != 0 && want != k.KEM() {
		return nil, fmt.Errorf("%w: %s holds a %v key, not %v", ErrMaterial, path, k.KEM(), want)
	}
	secret, err := kem.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return &Material{KEM: k.KEM(), Secret: secret}, nil
}

// ReadSmallFile reads a key file of at most MaxKeyFile bytes. The caller
// clears the bytes when they hold a key.
func ReadSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFile+1))
	if err != nil {
		clear(b)
		return nil, err
	}
	if len(b) > MaxKeyFile {
		clear(b)
		return nil, fmt.Errorf("%w: %s is larger than %d bytes: not a key file", ErrMaterial, path, MaxKeyFile)
	}
	return b, nil
}

// ReadPEMFile reads a small file and returns it with the type of its
// first PEM block ("" if it has none).
func ReadPEMFile(path string) ([]byte, string, error) {
	b, err := ReadSmallFile(path)
	if err != nil {
		return nil, "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return b, "", nil
	}
	clear(blk.Bytes)
	return b, blk.Type, nil
}
