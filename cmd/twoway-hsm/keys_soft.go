package main

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/plugins/keyset"
)

// keyMaterial is a private key read for import: its KEM and HPKE's
// SerializePrivateKey (the scalar for DHKEMs, the seed for ML-KEM and
// X-Wing). wipe zeroes it.
type keyMaterial struct {
	id     kem.ID
	secret []byte
}

func (m *keyMaterial) wipe() {
	if m != nil {
		clear(m.secret)
	}
}

// softKey returns the software key of the key material.
func (m *keyMaterial) softKey() (kem.PrivateKey, error) {
	return kem.NewPrivateKey(m.id, m.secret)
}

// readKeyMaterial reads a private key file for import: PKCS#8, SEC 1, a
// soft key file, or the raw private key (then want, from --kem, is
// required). want, when given, must match the file's KEM. Every copy of the
// key bytes this function makes, except the one it returns, is zeroed.
func readKeyMaterial(path string, want kem.ID) (*keyMaterial, error) {
	b, err := readSmallFile(path)
	defer clear(b)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	var m *keyMaterial
	if bytes.Contains(b, []byte("-----BEGIN")) {
		m, err = pemKeyMaterial(path, b)
		if err != nil {
			return nil, err
		}
		if want != 0 && want != m.id {
			m.wipe()
			return nil, usagef("%s holds a %s key, not %s (drop --kem or fix it)", path, kemShort(m.id), kemShort(want))
		}
		return m, nil
	}
	if want == 0 {
		return nil, usagef("%s is not a PEM key file; for a raw private key (exactly the scalar bytes) give --kem", path)
	}
	k, err := kem.NewPrivateKey(want, b)
	if err != nil {
		return nil, fmt.Errorf("%s is not a raw %s private key (%d bytes): %w", path, kemShort(want), len(b), err)
	}
	secret, err := kem.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return &keyMaterial{id: want, secret: secret}, nil
}

// pemKeyMaterial decodes a PEM private key file.
func pemKeyMaterial(path string, b []byte) (*keyMaterial, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no valid PEM block", path)
	}
	defer clear(blk.Bytes)
	switch blk.Type {
	case tpmKeyPEMType:
		return nil, fmt.Errorf("%s is a TPM key file: its key is wrapped for one TPM and cannot be imported; use it as tpm2:file=%s", path, path)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%s is an encrypted PKCS#8 key: decrypt it first (openssl pkey -in %s), ideally onto a tmpfs, and remove the copy afterwards", path, path)
	}
	k, err := kem.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	secret, err := kem.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return &keyMaterial{id: k.KEM(), secret: secret}, nil
}

// writeNewFile writes data to a new file with mode 0600 (key files, PIN
// files); it never replaces an existing file.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", errSoftExists, path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// softKeyView describes a soft key.
func softKeyView(path string, k kem.PrivateKey) *keyView {
	v := &keyView{Ref: softFileRef(path), Backend: schemeSoft, Usable: true, Soft: &softView{File: absPath(path)}}
	v.setKEM(k.KEM(), k.PublicKeyBytes())
	return v
}

// softCreate generates (m == nil) or stores a software key in a new file.
func (c *secretCmd) softCreate(ref string, id kem.ID, m *keyMaterial) (*keyView, error) {
	r, err := parseSoftRef(ref)
	if err != nil {
		return nil, err
	}
	if r.File == "" {
		return nil, usagef("a soft key is created as soft:file=PATH, not %s", ref)
	}
	if err := checkNewFile(r.File); err != nil {
		return nil, err
	}
	var k kem.PrivateKey
	if m == nil {
		k, err = kem.GenerateKey(id)
	} else {
		k, err = m.softKey()
	}
	if err != nil {
		return nil, err
	}
	b, err := kem.MarshalPrivateKeyPEM(k)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	c.warnSoft()
	if err := writeNewFile(r.File, b); err != nil {
		return nil, err
	}
	return softKeyView(r.File, k), nil
}

// parseSoftKey parses the soft key file at path, read into b.
func parseSoftKey(path string, b []byte) (kem.PrivateKey, error) {
	k, err := kem.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("soft key %s: %w", path, err)
	}
	return k, nil
}

// softKeyRef reads the key of a soft:file= reference; what says what the
// command does with it when the reference names no file.
func softKeyRef(ref, what string) (string, kem.PrivateKey, error) {
	r, err := parseSoftRef(ref)
	if err != nil {
		return "", nil, err
	}
	if r.File == "" {
		return "", nil, usagef("%s: %s", ref, what)
	}
	k, err := keyset.ReadSoftKey(r.File)
	return r.File, k, err
}

func (c *secretCmd) softShow(ref string) (*keyView, error) {
	path, k, err := softKeyRef(ref, "name the key with soft:file=PATH; 'twoway-hsm keys list soft:dir=DIR' lists a directory")
	if err != nil {
		return nil, err
	}
	c.warnSoft()
	return softKeyView(path, k), nil
}

// softPublic returns the KEM and public key of a soft key for key-config.
func softPublic(ref string) (kem.ID, []byte, error) {
	_, k, err := softKeyRef(ref, "name the key with soft:file=PATH")
	if err != nil {
		return 0, nil, err
	}
	return k.KEM(), k.PublicKeyBytes(), nil
}

// softList lists the soft key files in a directory: every file holding a
// PEM private key block, usable or not.
func (c *secretCmd) softList(ref string) (*listView, error) {
	r, err := parseSoftRef(ref)
	if err != nil {
		return nil, err
	}
	if r.Dir == "" {
		return nil, usagef("keys list takes soft:dir=DIR; use 'keys show' for one file")
	}
	ents, err := os.ReadDir(r.Dir)
	if err != nil {
		return nil, err
	}
	c.warnSoft()
	l := &listView{Backend: schemeSoft, Dir: absPath(r.Dir), Keys: []*keyView{}}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(r.Dir, e.Name())
		b, typ, err := readPEMFile(p)
		if err != nil {
			continue
		}
		switch typ {
		case "PRIVATE KEY", "EC PRIVATE KEY", "HPKE PRIVATE KEY":
			k, err := parseSoftKey(p, b)
			if err != nil {
				l.Keys = append(l.Keys, &keyView{Ref: softFileRef(p), Backend: schemeSoft, Problem: err.Error(), Soft: &softView{File: absPath(p)}})
			} else {
				l.Keys = append(l.Keys, softKeyView(p, k))
			}
		}
		// Other files, TPM key files included, are not soft key files.
		clear(b)
	}
	return l, nil
}

func (c *secretCmd) softDelete(ref string, confirm func(*keyView) error) (*deleteView, error) {
	path, k, err := softKeyRef(ref, "name the key to delete with soft:file=PATH")
	if isUsage(err) || errors.Is(err, fs.ErrNotExist) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("%w; not deleting a file that is not a soft key", err)
	}
	v := softKeyView(path, k)
	if err := confirm(v); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil {
		return nil, err
	}
	return &deleteView{Deleted: []string{"soft key file " + absPath(path)}, Key: v}, nil
}
