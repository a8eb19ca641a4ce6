package tpm2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	gotpm "github.com/google/go-tpm/tpm2"

	"github.com/twoway-hsm/twoway-hsm/keystore"
)

// Key files use the "TSS2 PRIVATE KEY" PEM format (the ASN.1 TPMKey
// structure of the TPM 2.0 key file specification, as written by
// tpm2-openssl, tpm2-tss-engine and go-tpm-keyfiles). A file holds the
// key's public area, its private area wrapped by the parent (which only the
// TPM that created it can unwrap), the parent handle (0x40000001 for the
// SRK from the standard template, or a persistent handle), and whether the
// key has an auth value. It holds nothing secret in the clear, but it is
// written with mode 0600 anyway.
//
// The files this package writes have the type, emptyAuth (when the key
// has no auth value), the parent, the public and the private area, and
// nothing else: in particular no [4] description, which Debian's
// tpm2-openssl 1.1.1 refuses ("unsupported"). openssl's tpm2 provider
// and tpm2-tools read them.

func newKeyFile(pub gotpm.TPM2BPublic, priv gotpm.TPM2BPrivate, parentID Handle, emptyAuth bool) *keyfile.TPMKey {
	kf := keyfile.NewTPMKey(keyfile.OIDLoadableKey, pub, priv,
		keyfile.WithParent(gotpm.TPMHandle(parentID)))
	kf.EmptyAuth = emptyAuth
	kf.Description = ""
	return kf
}

// KeyFile returns the key as a TSS2 PRIVATE KEY PEM file. It fails for a
// key opened by persistent handle, which has no blob.
func (k *Key) KeyFile() ([]byte, error) {
	if k.blob == nil {
		return nil, fmt.Errorf("tpm2: key file: key at %v has no key file", Handle(k.persistent.Load()))
	}
	var b bytes.Buffer
	if err := keyfile.Encode(&b, k.blob); err != nil {
		return nil, fmt.Errorf("tpm2: key file: %w", err)
	}
	return b.Bytes(), nil
}

// WriteKeyFile writes the key file to path with mode 0600. It refuses to
// overwrite an existing file.
func (k *Key) WriteKeyFile(path string) error {
	b, err := k.KeyFile()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("tpm2: write key file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("tpm2: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("tpm2: write key file: %w", err)
	}
	return nil
}

// LoadKeyFile opens the key in the TSS2 PRIVATE KEY file at path and loads
// it into the TPM under its parent. The options WithAuth, WithAuthFile or
// WithAuthEnv give its auth value, and WithAuthPrompt one for a key whose
// file records one. Loading needs no auth value: a key that needs one and
// was loaded without refuses ECDH with [ErrAuthRequired] (see
// [Key.NeedsAuth]) instead of trying, so that no attempt counts towards
// the TPM's dictionary-attack lockout. Errors wrap [ErrKeyFileNotFound]
// (and fs.ErrNotExist) for a missing file, [ErrInvalidKeyFile] for a
// malformed one, and [ErrWrongTPM] for a key made by another TPM.
func (t *TPM) LoadKeyFile(ctx context.Context, path string, opts ...Option) (*Key, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	kf, err := parseKeyFile(b)
	if err != nil {
		return nil, fmt.Errorf("tpm2: load %s: %w", path, err)
	}
	k, err := t.loadKey(ctx, kf, opts)
	if err != nil {
		return nil, fmt.Errorf("tpm2: load %s: %w", path, err)
	}
	return k, nil
}

// LoadKey is [TPM.LoadKeyFile] for a key file already in memory.
func (t *TPM) LoadKey(ctx context.Context, pemBytes []byte, opts ...Option) (*Key, error) {
	kf, err := parseKeyFile(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("tpm2: load key: %w", err)
	}
	k, err := t.loadKey(ctx, kf, opts)
	if err != nil {
		return nil, fmt.Errorf("tpm2: load key: %w", err)
	}
	return k, nil
}

// loadKey opens the key of a parsed key file (see parseKeyFile).
func (t *TPM) loadKey(ctx context.Context, kf *keyfile.TPMKey, opts []Option) (*Key, error) {
	if t.closed.Load() {
		return nil, ErrClosed
	}
	pub, err := kf.Pubkey.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: public area: %w", ErrInvalidKeyFile, err)
	}
	cfg := t.mergedConfig(opts)
	auth, err := cfg.resolveAuth(!kf.EmptyAuth)
	if err != nil {
		return nil, err
	}
	k, err := t.newKey(pub, cfg, auth)
	if err != nil {
		return nil, err
	}
	k.blob, k.needsAuth = kf, !kf.EmptyAuth
	k.parentID = Handle(kf.Parent)
	if k.parentID == 0 || k.parentID>>24 == 0x80 {
		// Some writers record a transient handle; the key was made under
		// the SRK of the owner hierarchy.
		k.parentID = ownerHierarchy
	}
	// Load now, so a key file for another TPM fails here, not at first use.
	err = k.c.do(ctx, func() error {
		_, err := k.c.ensureLoaded(k)
		return err
	})
	if err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// readKeyFile reads a key file of at most keystore.MaxKeyFile bytes.
func readKeyFile(path string) ([]byte, error) {
	b, err := keystore.ReadSmallFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: %w", ErrKeyFileNotFound, path, fs.ErrNotExist)
		}
		if errors.Is(err, keystore.ErrMaterial) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidKeyFile, err)
		}
		return nil, fmt.Errorf("tpm2: read key file: %w", err)
	}
	return b, nil
}

func parseKeyFile(b []byte) (kf *keyfile.TPMKey, err error) {
	defer func() {
		// The DER parser is not hardened against every malformed input.
		if r := recover(); r != nil {
			kf, err = nil, fmt.Errorf("%w: malformed TSS2 key", ErrInvalidKeyFile)
		}
	}()
	if bytes.Contains(b, []byte("-----BEGIN")) {
		kf, err = keyfile.Decode(b)
	} else {
		kf, err = keyfile.Parse(b) // DER
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKeyFile, err)
	}
	switch {
	case kf.Keytype.Equal(keyfile.OIDLoadableKey), kf.Keytype.Equal(keyfile.OIDOldLoadableKey):
	case kf.Keytype.Equal(keyfile.OIDImportableKey):
		return nil, fmt.Errorf("%w: importable keys must be imported first (TPM.ImportKey produces loadable files)", ErrInvalidKeyFile)
	default:
		return nil, fmt.Errorf("%w: key type %v is not a loadable key", ErrInvalidKeyFile, kf.Keytype)
	}
	if len(kf.Policy) != 0 || len(kf.AuthPolicy) != 0 {
		return nil, fmt.Errorf("%w: keys with policies are not supported", ErrInvalidKeyFile)
	}
	return kf, nil
}
