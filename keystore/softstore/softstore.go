// Package softstore is the key store of software key files, for
// development only: the private key is in a file and, once opened, in the
// memory of the process that opened it, which is what the hardware stores
// exist to avoid. Importing the package registers it under the scheme
// "soft":
//
//	soft:file=/etc/twoway/dev-key.pem   one key file (create, import, show, delete, open)
//	soft:dir=/etc/twoway                a directory (list)
//
// A key file is a PEM private key of package kem (kem.MarshalPrivateKeyPEM:
// "HPKE PRIVATE KEY" for any KEM, or PKCS#8 / SEC 1), written with mode
// 0600 and never over an existing file.
package softstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
)

// Scheme is the reference scheme of software key files.
const Scheme = "soft"

func init() {
	keystore.Register(keystore.Backend{
		Scheme:       Scheme,
		Summary:      "a private key in a file, development only",
		Development:  true,
		Warning:      Warning,
		Store:        Store{},
		Troubleshoot: "Check that the key file exists and holds a private key ('twoway-hsm keys create soft:file=PATH --kem x25519' makes one).",
		Hint:         hint,
	})
}

// Warning is what callers print whenever a soft key is created or used.
const Warning = "development only: the private key is in a file, not in hardware; anyone who can read the file has the key"

var spec = keyref.Spec{Scheme: Scheme, Path: []string{"file", "dir"}}

// ErrFileExists is returned (with keystore.ErrExists) when a key file
// would overwrite a file.
var ErrFileExists = errors.New("softstore: file already exists")

// ref is a parsed soft: reference.
type ref struct {
	file, dir string
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", keystore.ErrInvalidRef, fmt.Sprintf(format, a...))
}

func parse(s string) (*ref, error) {
	if err := keystore.RefuseInlineSecret(s); err != nil {
		return nil, err
	}
	r, err := spec.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", keystore.ErrInvalidRef, err)
	}
	out := &ref{}
	out.file, _ = r.Get("file")
	out.dir, _ = r.Get("dir")
	switch {
	case r.Has("file") && out.file == "", r.Has("dir") && out.dir == "":
		return nil, invalid("%s: empty path", s)
	case out.file != "" && out.dir != "":
		return nil, invalid("%s: give file= (one key) or dir= (to list a directory), not both", s)
	case out.file == "" && out.dir == "":
		return nil, invalid("%s: want soft:file=PATH, or soft:dir=PATH to list a directory", s)
	}
	return out, nil
}

// parseFile parses a reference that must name one key file; what says
// what the command does with it.
func parseFile(s, what string) (string, error) {
	r, err := parse(s)
	if err != nil {
		return "", err
	}
	if r.file == "" {
		return "", invalid("%s: %s", s, what)
	}
	return r.file, nil
}

// Ref formats the reference of a key file, with its path made absolute.
func Ref(path string) string {
	return (&keyref.Ref{Scheme: Scheme, Path: []keyref.Attr{{Name: "file", Value: absPath(path)}}}).String()
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Details are a soft key's details for scripts.
type Details struct {
	File string `json:"file"`
}

// ListDetails describe a listed directory.
type ListDetails struct {
	Dir string `json:"dir"`
}

func info(path string, k kem.PrivateKey) *keystore.KeyInfo {
	abs := absPath(path)
	return &keystore.KeyInfo{
		Ref: Ref(path), Backend: Scheme, KEM: k.KEM(), PublicKey: k.PublicKeyBytes(), Usable: true,
		Name: abs, Attributes: []string{"in a file"},
		Fields:  []keystore.Field{{Name: "key file", Value: abs}},
		Details: &Details{File: abs},
	}
}

// Store is the store of software key files. Its zero value is ready.
type Store struct{}

// Create implements keystore.Store: a new key file.
func (Store) Create(ctx context.Context, s string, id kem.ID, o *keystore.Options) (*keystore.KeyInfo, error) {
	path, err := parseFile(s, "a soft key is created as soft:file=PATH")
	if err != nil {
		return nil, err
	}
	if !id.Supported() {
		return nil, fmt.Errorf("%w: KEM %v", keystore.ErrUnsupported, id)
	}
	k, err := kem.GenerateKey(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", keystore.ErrUnsupported, err)
	}
	return write(path, k)
}

// Import implements keystore.Store: the key in a new key file.
func (Store) Import(ctx context.Context, s string, m *keystore.Material, o *keystore.Options) (*keystore.KeyInfo, error) {
	path, err := parseFile(s, "a soft key is imported as soft:file=PATH")
	if err != nil {
		return nil, err
	}
	k, err := kem.NewPrivateKey(m.KEM, m.Secret)
	if err != nil {
		return nil, fmt.Errorf("the %v private key is invalid: %w", m.KEM, err)
	}
	return write(path, k)
}

func write(path string, k kem.PrivateKey) (*keystore.KeyInfo, error) {
	if err := CheckNewFile(path); err != nil {
		return nil, err
	}
	b, err := kem.MarshalPrivateKeyPEM(k)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	if err := WriteNewFile(path, b); err != nil {
		return nil, err
	}
	return info(path, k), nil
}

// CheckNewFile refuses a path that exists, or whose directory does not.
func CheckNewFile(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%w: %w: %s (key files are never overwritten)", keystore.ErrExists, ErrFileExists, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("directory %s does not exist: create it first (mode 0700 is a good choice for key files)", dir)
	}
	return nil
}

// WriteNewFile writes data to a new file with mode 0600; it never
// replaces an existing file, and removes what it wrote if it fails.
func WriteNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %w: %s", keystore.ErrExists, ErrFileExists, path)
		}
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// read reads and parses the key file at path.
func read(path string) (kem.PrivateKey, error) {
	b, err := keystore.ReadSmallFile(path)
	defer clear(b)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: soft key file %s does not exist", keystore.ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("soft key: %w", err)
	}
	k, err := kem.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("soft key %s: %w", path, err)
	}
	return k, nil
}

// Show implements keystore.Store.
func (Store) Show(ctx context.Context, s string, o *keystore.Options) (*keystore.KeyInfo, error) {
	path, err := parseFile(s, "name the key with soft:file=PATH; soft:dir=DIR lists a directory")
	if err != nil {
		return nil, err
	}
	k, err := read(path)
	if err != nil {
		return nil, err
	}
	return info(path, k), nil
}

// Public implements keystore.Store.
func (st Store) Public(ctx context.Context, s string, o *keystore.Options) (kem.ID, []byte, error) {
	i, err := st.Show(ctx, s, o)
	if err != nil {
		return 0, nil, err
	}
	return i.KEM, i.PublicKey, nil
}

// Open implements keystore.Store: the key, in this process's memory.
func (Store) Open(ctx context.Context, s string, o *keystore.Options) (keystore.Key, error) {
	path, err := parseFile(s, "name the key with soft:file=PATH")
	if err != nil {
		return nil, err
	}
	k, err := read(path)
	if err != nil {
		return nil, err
	}
	if x, ok := k.(kem.Exchanger); ok && k.KEM().IsDH() {
		return &dhKey{softKey{k}, x}, nil
	}
	return softKey{k}, nil
}

// softKey is an opened soft key; closing it releases nothing (the key is
// garbage collected).
type softKey struct{ kem.PrivateKey }

func (softKey) Close() error { return nil }

// dhKey is an opened soft key with a Diffie-Hellman step.
type dhKey struct {
	softKey
	kem.Exchanger
}

// List implements keystore.Store: the soft key files in a directory,
// usable or not.
func (Store) List(ctx context.Context, s string, o *keystore.Options) (*keystore.Listing, error) {
	r, err := parse(s)
	if err != nil {
		return nil, err
	}
	if r.dir == "" {
		return nil, invalid("%s: list takes soft:dir=DIR; show one file with soft:file=PATH", s)
	}
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, err
	}
	abs := absPath(r.dir)
	l := &keystore.Listing{Backend: Scheme, Title: "soft key files in " + abs + " (development only)",
		Details: &ListDetails{Dir: abs}, Keys: []*keystore.KeyInfo{}}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(r.dir, e.Name())
		b, typ, err := keystore.ReadPEMFile(p)
		if err != nil {
			continue
		}
		switch typ {
		case "PRIVATE KEY", "EC PRIVATE KEY", "HPKE PRIVATE KEY":
		default:
			clear(b)
			continue // not a soft key file (TPM key files included)
		}
		k, err := kem.ParsePrivateKeyPEM(b) // the bytes already read
		clear(b)
		if err != nil {
			err = fmt.Errorf("soft key %s: %w", p, err)
			a := absPath(p)
			l.Keys = append(l.Keys, &keystore.KeyInfo{Ref: Ref(p), Backend: Scheme, Problem: err.Error(), Name: a,
				Fields: []keystore.Field{{Name: "key file", Value: a}}, Details: &Details{File: a}})
			continue
		}
		l.Keys = append(l.Keys, info(p, k))
	}
	return l, nil
}

// Delete implements keystore.Store: it removes a soft key file, and
// nothing that is not one.
func (Store) Delete(ctx context.Context, s string, confirm func(*keystore.KeyInfo) error, o *keystore.Options) (*keystore.Deletion, error) {
	path, err := parseFile(s, "name the key to delete with soft:file=PATH")
	if err != nil {
		return nil, err
	}
	k, err := read(path)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("%w; not deleting a file that is not a soft key", err)
	}
	i := info(path, k)
	if err := confirm(i); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil {
		return nil, err
	}
	return &keystore.Deletion{Deleted: []string{"soft key file " + absPath(path)}, Key: i}, nil
}

func hint(err error) string {
	if errors.Is(err, ErrFileExists) {
		return "key files are never overwritten: choose another file= or delete the old key with 'twoway-hsm keys delete'"
	}
	return ""
}

var _ keystore.Store = Store{}

// Check implements keystore.Store: the reference names one key file.
func (Store) Check(s string) error {
	_, err := parseFile(s, "name the key with soft:file=PATH")
	return err
}
