package main

import (
	"context"
	"crypto/ecdh"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// tpmKeyPEMType is the PEM type of a TPM key file (TSS2 PRIVATE KEY).
const tpmKeyPEMType = "TSS2 PRIVATE KEY"

// tpmKEMs are the KEMs a TPM key can serve.
var tpmKEMs = []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMP384HKDFSHA384, kem.DHKEMP521HKDFSHA512}

// openTPM connects to the TPM a reference names.
func openTPM(ctx context.Context, r *tpmRef) (*tpm2.TPM, error) {
	return tpm2.Open(ctx, r.transport())
}

// tpm2KeyView describes a TPM key.
func tpm2KeyView(ref, transport string, k *tpm2.Key, file string) *keyView {
	v := &keyView{Ref: ref, Backend: schemeTPM2, Usable: true, TPM2: &tpm2View{Transport: transport}}
	v.setKEM(k.KEM(), k.PublicKeyBytes())
	if file != "" {
		v.TPM2.File = absPath(file)
	}
	if h, ok := k.Handle(); ok {
		v.TPM2.Handle = h.String()
	}
	return v
}

// tpm2Create creates (m == nil) or imports a key into the TPM, writes its
// key file (file=) and/or makes it persistent (handle=).
func (c *secretCmd) tpm2Create(ctx context.Context, ref string, id kem.ID, m *keyMaterial) (*keyView, error) {
	r, err := parseTPMKeyRef(ref, "say where the key goes: file=PATH (a key file, recommended) and/or handle=0x81000010 (a persistent handle), e.g. tpm2:file=/etc/twoway/gw.pem")
	if err != nil {
		return nil, err
	}
	if !slices.Contains(tpmKEMs, id) {
		return nil, usagef("a TPM key can be p256, p384 or p521 (as the TPM implements them), not %s", kemShort(id))
	}
	if r.File != "" {
		if err := checkNewFile(r.File); err != nil {
			return nil, err
		}
	}
	// The key's auth value: --pin-file or --pin-env, else the reference's
	// auth-source; the printed reference says where it is.
	if src := c.pinSourceForRef(""); src != "" {
		r.AuthSource = src
	}
	t, err := openTPM(ctx, r)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	curve := id.Curve()
	have, err := t.Curves(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(have, curve) {
		var names []string
		for _, c := range have {
			names = append(names, curveName(c))
		}
		return nil, fmt.Errorf("%w: the TPM at %s does not implement %s (it has %s)", tpm2.ErrUnsupportedCurve, r.transport(), kemShort(id), strings.Join(names, ", "))
	}
	if r.Handle != 0 {
		hs, err := t.PersistentHandles(ctx)
		if err != nil {
			return nil, err
		}
		if slices.Contains(hs, r.Handle) {
			return nil, fmt.Errorf("%w: %s holds another object", tpm2.ErrHandleInUse, r.Handle)
		}
	}
	opts := []tpm2.Option{(*tpm2.KeyRef)(r).AuthOption(), tpm2.WithDescription("twoway-hsm " + kemShort(id))}
	var k *tpm2.Key
	if m == nil {
		k, err = t.CreateKey(ctx, curve, opts...)
	} else {
		priv, perr := curve.NewPrivateKey(m.secret)
		if perr != nil {
			return nil, fmt.Errorf("the %s private key is invalid: %w", kemShort(id), perr)
		}
		k, err = t.ImportKey(ctx, priv, opts...)
	}
	if err != nil {
		return nil, err
	}
	defer k.Close()
	if r.File != "" {
		if err := k.WriteKeyFile(r.File); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("%w: %s", errSoftExists, r.File)
			}
			return nil, err
		}
	}
	if r.Handle != 0 {
		if err := k.Persist(ctx, r.Handle); err != nil {
			if r.File != "" {
				os.Remove(r.File)
			}
			return nil, err
		}
	}
	v := tpm2KeyView(r.outRef(), t.Transport(), k, r.File)
	if r.Handle != 0 {
		v.TPM2.Handle = r.Handle.String()
		v.TPM2.HandleRef = r.handleRef()
	}
	return v, nil
}

// checkNewFile refuses a path that exists, or whose directory does not.
func checkNewFile(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%w: %s", errSoftExists, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("directory %s does not exist: create it first (mode 0700 is a good choice for key files)", dir)
	}
	return nil
}

// openTPMKey connects to the TPM and opens the key a file= or handle=
// reference names, without its auth value: showing and publishing a key
// needs none. A missing key file is reported before the TPM is reached.
// The caller closes both.
func openTPMKey(ctx context.Context, r *tpmRef) (*tpm2.TPM, *tpm2.Key, error) {
	var file []byte
	if r.File != "" {
		var err error
		if file, err = readSmallFile(r.File); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: %s", tpm2.ErrKeyFileNotFound, absPath(r.File))
		} else if err != nil {
			return nil, nil, err
		}
	}
	t, err := openTPM(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	var k *tpm2.Key
	if file != nil {
		k, err = loadTPMKeyFile(ctx, t, r.File, file)
	} else {
		k, err = t.OpenHandle(ctx, r.Handle)
	}
	if err != nil {
		t.Close()
		return nil, nil, err
	}
	return t, k, nil
}

// loadTPMKeyFile loads the key file at path, already read into b.
func loadTPMKeyFile(ctx context.Context, t *tpm2.TPM, path string, b []byte) (*tpm2.Key, error) {
	k, err := t.LoadKey(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", absPath(path), err)
	}
	return k, nil
}

func (c *secretCmd) tpm2Show(ctx context.Context, ref string) (*keyView, error) {
	r, err := parseTPMKeyRef(ref, "name the key with file=PATH or handle=0x81......; 'twoway-hsm keys list' lists keys")
	if err != nil {
		return nil, err
	}
	t, k, err := openTPMKey(ctx, r)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	defer k.Close()
	v := tpm2KeyView(r.outRef(), t.Transport(), k, r.File)
	if r.File != "" && r.Handle != 0 {
		v.TPM2.Handle = r.Handle.String()
		v.TPM2.HandleRef = r.handleRef()
	}
	return v, nil
}

// tpm2Public returns the KEM and public key of a TPM key for key-config.
// Loading a key needs no auth value, so none is read.
func tpm2Public(ctx context.Context, ref string) (kem.ID, []byte, error) {
	r, err := parseTPMKeyRef(ref, "name the key with file=PATH or handle=0x81......")
	if err != nil {
		return 0, nil, err
	}
	t, k, err := openTPMKey(ctx, r)
	if err != nil {
		return 0, nil, err
	}
	defer t.Close()
	defer k.Close()
	return k.KEM(), k.PublicKeyBytes(), nil
}

// tpm2List lists the persistent handles (tpm2:?tpm=...) or the key files
// in a directory (tpm2:dir=DIR).
func (c *secretCmd) tpm2List(ctx context.Context, ref string) (*listView, error) {
	r, err := parseTPMRef(ref)
	if err != nil {
		return nil, err
	}
	if r.File != "" || r.Handle != 0 {
		return nil, usagef("keys list takes tpm2:?tpm=TRANSPORT (the persistent handles) or tpm2:dir=DIR (key files); use 'keys show' for one key")
	}
	var files []keyFile
	if r.Dir != "" {
		files, err = tpmKeyFiles(r.Dir)
		if err != nil {
			return nil, err
		}
	}
	t, err := openTPM(ctx, r)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	l := &listView{Backend: schemeTPM2, Transport: t.Transport(), Keys: []*keyView{}}
	if r.Dir != "" {
		l.Dir = absPath(r.Dir)
		for _, f := range files {
			fr := &tpmRef{File: f.path, TPM: r.TPM}
			k, err := loadTPMKeyFile(ctx, t, f.path, f.data)
			if err != nil {
				l.Keys = append(l.Keys, &keyView{Ref: fr.fileRef(), Backend: schemeTPM2, Problem: err.Error(),
					TPM2: &tpm2View{Transport: t.Transport(), File: absPath(f.path)}})
				continue
			}
			l.Keys = append(l.Keys, tpm2KeyView(fr.fileRef(), t.Transport(), k, f.path))
			k.Close()
		}
		return l, nil
	}
	hs, err := t.PersistentHandles(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		hr := &tpmRef{Handle: h, TPM: r.TPM}
		k, err := t.OpenHandle(ctx, h)
		if err != nil {
			problem := err.Error()
			if h == tpm2.SRKHandle {
				problem = "the storage root key (not an ECDH key)"
			} else if errors.Is(err, tpm2.ErrUnsupportedKey) {
				problem = "not an ECDH key: " + problem
			}
			l.Keys = append(l.Keys, &keyView{Ref: hr.handleRef(), Backend: schemeTPM2, Problem: problem,
				TPM2: &tpm2View{Transport: t.Transport(), Handle: h.String()}})
			continue
		}
		l.Keys = append(l.Keys, tpm2KeyView(hr.handleRef(), t.Transport(), k, ""))
		k.Close()
	}
	return l, nil
}

// keyFile is a key file read into memory.
type keyFile struct {
	path string
	data []byte
}

// tpmKeyFiles reads the TPM key files (TSS2 PRIVATE KEY PEM) in dir, in
// the order of their names.
func tpmKeyFiles(dir string) ([]keyFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []keyFile
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if b, typ, err := readPEMFile(p); err == nil && typ == tpmKeyPEMType {
			out = append(out, keyFile{path: p, data: b})
		}
	}
	return out, nil
}

// readPEMFile reads a (small) file and returns it with the type of its
// first PEM block ("" if it has none).
func readPEMFile(path string) ([]byte, string, error) {
	b, err := readSmallFile(path)
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

// maxKeyFileSize bounds the key files read.
const maxKeyFileSize = 64 << 10

// readSmallFile reads a file of at most maxKeyFileSize bytes.
func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		clear(b)
		return nil, err
	}
	if len(b) > maxKeyFileSize {
		clear(b)
		return nil, fmt.Errorf("%s is larger than %d bytes: not a key file", path, maxKeyFileSize)
	}
	return b, nil
}

// tpm2Delete evicts handle= and/or removes file=.
func (c *secretCmd) tpm2Delete(ctx context.Context, ref string, confirm func(*keyView) error) (*deleteView, error) {
	r, err := parseTPMKeyRef(ref, "name the key to delete with file=PATH and/or handle=0x81......")
	if err != nil {
		return nil, err
	}
	var file []byte
	if r.File != "" {
		b, typ, err := readPEMFile(r.File)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s", tpm2.ErrKeyFileNotFound, r.File)
			}
			return nil, err
		}
		if typ != tpmKeyPEMType {
			clear(b)
			return nil, fmt.Errorf("%s is not a TPM key file (%s PEM); not deleting it", r.File, tpmKeyPEMType)
		}
		file = b
	}
	v := &keyView{Ref: r.outRef(), Backend: schemeTPM2, TPM2: &tpm2View{Transport: r.transport()}}
	if r.File != "" {
		v.TPM2.File = absPath(r.File)
	}
	if r.Handle != 0 {
		v.TPM2.Handle = r.Handle.String()
	}
	// Describe the key. The handle must hold an ECDH key: never evict the
	// SRK or another tool's objects. A key file is deleted even when the
	// TPM cannot be reached to describe it.
	t, terr := openTPM(ctx, r)
	if terr == nil {
		defer t.Close()
	}
	var k *tpm2.Key
	switch {
	case terr != nil && r.Handle != 0:
		return nil, terr
	case terr != nil:
		err = terr
	case r.Handle != 0:
		k, err = t.OpenHandle(ctx, r.Handle)
		if errors.Is(err, tpm2.ErrUnsupportedKey) {
			return nil, fmt.Errorf("%s holds no ECDH key (0x81000001 is usually the storage root key); twoway-hsm evicts only keys it can use: %w", r.Handle, err)
		} else if err != nil {
			return nil, err
		}
	default:
		k, err = loadTPMKeyFile(ctx, t, r.File, file)
	}
	if err != nil {
		v.Problem = err.Error()
	} else {
		v.setKEM(k.KEM(), k.PublicKeyBytes())
		v.Usable = true
		k.Close()
	}
	if err := confirm(v); err != nil {
		return nil, err
	}
	d := &deleteView{Key: v}
	if r.Handle != 0 {
		if err := t.EvictHandle(ctx, r.Handle); err != nil {
			return nil, err
		}
		d.Deleted = append(d.Deleted, "persistent handle "+r.Handle.String()+" in the TPM at "+r.transport())
	}
	if r.File != "" {
		if err := os.Remove(r.File); err != nil {
			return d, err
		}
		d.Deleted = append(d.Deleted, "key file "+absPath(r.File))
	}
	return d, nil
}

// curveName names a crypto/ecdh curve for messages.
func curveName(c ecdh.Curve) string {
	id, err := kem.IDForCurve(c)
	if err != nil {
		return fmt.Sprint(c)
	}
	return kemShort(id)
}
