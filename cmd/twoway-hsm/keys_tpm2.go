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
	r, err := parseTPMRef(ref)
	if err != nil {
		return nil, err
	}
	if r.Dir != "" || (r.File == "" && r.Handle == 0) {
		return nil, usagef("say where the key goes: file=PATH (a key file, recommended) and/or handle=0x81000010 (a persistent handle), e.g. tpm2:file=/etc/twoway/gw.pem")
	}
	if !slices.Contains(tpmKEMs, id) {
		return nil, usagef("a TPM key can be p256, p384 or p521 (as the TPM implements them), not %s", kemShort(id))
	}
	if r.File != "" {
		if err := checkNewFile(r.File); err != nil {
			return nil, err
		}
	}
	// The key's auth value: the reference's auth-source, overridden by
	// --pin-file or --pin-env; the printed reference says where it is.
	opts := r.authOptions()
	flagOpts, err := c.secrets.tpm2Options(c.env)
	if err != nil {
		return nil, err
	}
	opts = append(opts, flagOpts...)
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
	opts = append(opts, tpm2.WithDescription("twoway-hsm "+kemShort(id)))
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
	out := r.handleRef()
	if r.File != "" {
		out = r.fileRef()
	}
	v := tpm2KeyView(out, t.Transport(), k, r.File)
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

// loadTPMKey opens the key a file= or handle= reference names, without
// its auth value: showing and publishing a key needs none.
func loadTPMKey(ctx context.Context, t *tpm2.TPM, r *tpmRef) (*tpm2.Key, error) {
	if r.File != "" {
		return t.LoadKeyFile(ctx, r.File)
	}
	return t.OpenHandle(ctx, r.Handle)
}

func (c *secretCmd) tpm2Show(ctx context.Context, ref string) (*keyView, error) {
	r, err := parseTPMRef(ref)
	if err != nil {
		return nil, err
	}
	if r.Dir != "" || (r.File == "" && r.Handle == 0) {
		return nil, usagef("name the key with file=PATH or handle=0x81......; 'twoway-hsm keys list' lists keys")
	}
	if r.File != "" {
		if _, err := os.Stat(r.File); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", tpm2.ErrKeyFileNotFound, absPath(r.File))
		} else if err != nil {
			return nil, err
		}
	}
	t, err := openTPM(ctx, r)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	k, err := loadTPMKey(ctx, t, r)
	if err != nil {
		return nil, err
	}
	defer k.Close()
	out := r.handleRef()
	if r.File != "" {
		out = r.fileRef()
	}
	v := tpm2KeyView(out, t.Transport(), k, r.File)
	if r.File != "" && r.Handle != 0 {
		v.TPM2.Handle = r.Handle.String()
		v.TPM2.HandleRef = r.handleRef()
	}
	return v, nil
}

// tpm2Public returns the KEM and public key of a TPM key for key-config.
// Loading a key needs no auth value, so none is read.
func tpm2Public(ctx context.Context, ref string) (kem.ID, []byte, error) {
	r, err := parseTPMRef(ref)
	if err != nil {
		return 0, nil, err
	}
	if r.Dir != "" || (r.File == "" && r.Handle == 0) {
		return 0, nil, usagef("%s: name the key with file=PATH or handle=0x81......", ref)
	}
	t, err := openTPM(ctx, r)
	if err != nil {
		return 0, nil, err
	}
	defer t.Close()
	k, err := loadTPMKey(ctx, t, r)
	if err != nil {
		return 0, nil, err
	}
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
	var files []string
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
			fr := &tpmRef{File: f, TPM: r.TPM}
			k, err := t.LoadKeyFile(ctx, f)
			if err != nil {
				l.Keys = append(l.Keys, &keyView{Ref: fr.fileRef(), Backend: schemeTPM2, Problem: err.Error(),
					TPM2: &tpm2View{Transport: t.Transport(), File: absPath(f)}})
				continue
			}
			l.Keys = append(l.Keys, tpm2KeyView(fr.fileRef(), t.Transport(), k, f))
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

// tpmKeyFiles returns the TPM key files (TSS2 PRIVATE KEY PEM) in dir.
func tpmKeyFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if !e.Type().IsRegular() {
			continue
		}
		if typ, _ := pemTypeOf(p); typ == tpmKeyPEMType {
			out = append(out, p)
		}
	}
	return out, nil
}

// pemTypeOf returns the type of the first PEM block of a (small) file.
// The bytes read are zeroed.
func pemTypeOf(path string) (string, error) {
	b, err := readSmallFile(path)
	defer clear(b)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", nil
	}
	clear(blk.Bytes)
	return blk.Type, nil
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
	r, err := parseTPMRef(ref)
	if err != nil {
		return nil, err
	}
	if r.Dir != "" || (r.File == "" && r.Handle == 0) {
		return nil, usagef("name the key to delete with file=PATH and/or handle=0x81......")
	}
	if r.File != "" {
		typ, err := pemTypeOf(r.File)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s", tpm2.ErrKeyFileNotFound, r.File)
			}
			return nil, err
		}
		if typ != tpmKeyPEMType {
			return nil, fmt.Errorf("%s is not a TPM key file (%s PEM); not deleting it", r.File, tpmKeyPEMType)
		}
	}
	out := r.handleRef()
	if r.File != "" {
		out = r.fileRef()
	}
	v := &keyView{Ref: out, Backend: schemeTPM2, TPM2: &tpm2View{Transport: r.transport()}}
	if r.File != "" {
		v.TPM2.File = absPath(r.File)
	}
	if r.Handle != 0 {
		v.TPM2.Handle = r.Handle.String()
	}
	var t *tpm2.TPM
	if r.Handle != 0 {
		// The handle must hold an ECDH key: never evict the SRK or
		// another tool's objects.
		t, err = openTPM(ctx, r)
		if err != nil {
			return nil, err
		}
		defer t.Close()
		k, err := t.OpenHandle(ctx, r.Handle)
		if err != nil {
			if errors.Is(err, tpm2.ErrUnsupportedKey) {
				return nil, fmt.Errorf("%s holds no ECDH key (0x81000001 is usually the storage root key); twoway-hsm evicts only keys it can use: %w", r.Handle, err)
			}
			return nil, err
		}
		v.setKEM(k.KEM(), k.PublicKeyBytes())
		v.Usable = true
		k.Close()
	} else if t2, err := openTPM(ctx, r); err == nil {
		// Describe the key file if the TPM is there; delete it anyway if
		// it is not.
		if k, err := t2.LoadKeyFile(ctx, r.File); err == nil {
			v.setKEM(k.KEM(), k.PublicKeyBytes())
			v.Usable = true
			k.Close()
		} else {
			v.Problem = err.Error()
		}
		t2.Close()
	} else {
		v.Problem = err.Error()
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
