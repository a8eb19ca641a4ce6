// Package tpm2store is the key store of keys in a TPM 2.0 (package
// hsm/tpm2). Importing the package registers it under the scheme "tpm2".
// Keys are named by references of the one grammar (package
// keystore/keyref; see tpm2.KeyRef):
//
//	tpm2:file=/etc/twoway/gw.pem?tpm=/dev/tpmrm0&auth-source=file:/etc/twoway/gw.auth
//	tpm2:handle=0x81000010?tpm=tcp:127.0.0.1:2321
//	tpm2:file=/etc/twoway/gw.pem;handle=0x81000010   (Create, Show, Delete: the key in both places)
//	tpm2:?tpm=/dev/tpmrm0                            (List: the persistent handles)
//	tpm2:dir=/etc/twoway?tpm=/dev/tpmrm0             (List: the key files in a directory)
//
// A key's auth value comes from the reference's auth-source (file:PATH or
// env:NAME, read by package keystore/secret), else, for a key whose file
// records one, from [keystore.Options].Secret; a key file that records an
// auth value and has neither is refused before the TPM is asked
// ([keystore.ErrSecretRequired] with tpm2.ErrAuthRequired), so that no
// attempt counts towards the TPM's dictionary-attack lockout. Create uses
// the auth-source only: a key made with an auth value typed at a prompt
// could not be opened by a plugin.
//
// EC keys that can sign as well as decrypt (as tpm2-openssl and
// tpm2_create make them) are refused unless the reference says
// allow-sign=true (see package hsm/tpm2 for why).
//
// The references the store prints ([keystore.KeyInfo].Ref) name the key
// file by its absolute path, and carry tpm=, the auth-source in canonical
// form (file:/abs/path, env:NAME) and allow-sign=true from the reference
// given.
package tpm2store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
)

// Scheme is the reference scheme of TPM keys.
const Scheme = tpm2.RefScheme

func init() {
	keystore.Register(keystore.Backend{
		Scheme:     Scheme,
		Summary:    "a TPM 2.0 key (key file or persistent handle)",
		SecretAttr: tpm2.AttrAuthSource,
		Troubleshoot: "Check tpm= (/dev/tpmrm0, readable by the plugin's user: group tss; for swtpm its data channel, not the control channel), " +
			"that the key file is readable by the plugin and was made by this TPM, and, for a key with an auth value, that auth-source= names a file or variable the plugin can read.",
		Store:       Store{},
		Hint:        Hint,
		AuthFailure: IsAuthFailure,
	})
}

// Store is the store of TPM keys. Its zero value is ready; it is safe for
// concurrent use. The TPM connection of a transport is shared by the
// whole process (see hsm/tpm2).
type Store struct {
	// Options are added to what the store gives the TPM (WithTimeout,
	// WithTransientSRK). Leave out the auth options: the auth value
	// comes from the reference or keystore.Options.Secret.
	Options []tpm2.Option
}

var _ keystore.Store = Store{}

// KEMs are the KEMs a TPM key can serve (where the TPM has the curve).
var KEMs = []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMP384HKDFSHA384, kem.DHKEMP521HKDFSHA512}

// kinds maps the errors of hsm/tpm2 onto the keystore sentinels, first
// match first.
var kinds = []keystore.ErrorKind{
	{Backend: tpm2.ErrInvalidKeyRef, Store: keystore.ErrInvalidRef},
	{Backend: tpm2.ErrAuthRequired, Store: keystore.ErrSecretRequired},
	{Backend: tpm2.ErrInvalidAuth, Store: keystore.ErrSecretRequired},
	{Backend: tpm2.ErrAuthFail, Store: keystore.ErrAuth},
	{Backend: tpm2.ErrLockout, Store: keystore.ErrAuth},
	{Backend: tpm2.ErrKeyFileNotFound, Store: keystore.ErrNotFound},
	{Backend: tpm2.ErrKeyNotFound, Store: keystore.ErrNotFound},
	{Backend: tpm2.ErrHandleInUse, Store: keystore.ErrExists},
	{Backend: fs.ErrExist, Store: keystore.ErrExists},
	{Backend: tpm2.ErrUnsupportedCurve, Store: keystore.ErrUnsupported},
	{Backend: tpm2.ErrUnsupportedKey, Store: keystore.ErrUnsupported},
	{Backend: tpm2.ErrTPMUnavailable, Store: keystore.ErrUnavailable},
}

// wrap adds the keystore sentinel that fits an error of hsm/tpm2.
func wrap(err error) error { return keystore.Classify(err, kinds) }

func invalid(format string, a ...any) error {
	return &keystore.KindError{Kind: keystore.ErrInvalidRef, Err: fmt.Errorf("%w: %s", tpm2.ErrInvalidKeyRef, fmt.Sprintf(format, a...))}
}

// parse refuses a pin-value and parses the reference.
func parse(ref string) (*tpm2.KeyRef, error) {
	if err := keystore.RefuseInlineSecret(ref); err != nil {
		return nil, err
	}
	r, err := tpm2.ParseRef(ref)
	if err != nil {
		return nil, wrap(err)
	}
	return r, nil
}

// parseKey parses a reference that must name one key, by file= and/or
// handle=; what says what to do otherwise.
func parseKey(ref, what string) (*tpm2.KeyRef, error) {
	r, err := parse(ref)
	if err != nil {
		return nil, err
	}
	if !r.Key() {
		return nil, invalid("%s names no key: %s", r, what)
	}
	return r, nil
}

// options are the TPM options for a reference: the store's, the logger
// and the reference's own (auth-source, allow-sign).
func (st Store) options(r *tpm2.KeyRef, o *keystore.Options) []tpm2.Option {
	return append(append(slices.Clone(st.Options), tpm2.WithLogger(o.Log())), r.Options()...)
}

func (st Store) open(ctx context.Context, r *tpm2.KeyRef, o *keystore.Options) (*tpm2.TPM, error) {
	t, err := tpm2.Open(ctx, r.TPM, st.options(r, o)...)
	if err != nil {
		return nil, wrap(err)
	}
	return t, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Ref returns the canonical reference of a key in a key file (file != "")
// or at a persistent handle: the file made absolute, and the tpm=,
// auth-source (canonical) and allow-sign of the reference it was found
// with.
func Ref(given *tpm2.KeyRef, file string, h tpm2.Handle) string {
	r := &tpm2.KeyRef{Handle: h}
	if file != "" {
		r.File = absPath(file)
	}
	if given != nil {
		r.TPM, r.AuthSource, r.AllowSign = given.TPM, given.AuthSource, given.AllowSign
	}
	return r.String()
}

// Details are a TPM key's details for scripts (JSON).
type Details struct {
	Transport string `json:"transport"`
	File      string `json:"file,omitempty"`
	Handle    string `json:"handle,omitempty"` // persistent handle, 0x81......
	// HandleRef is the reference by persistent handle, when the key has
	// both a file and a handle.
	HandleRef string `json:"handle_ref,omitempty"`
	// NeedsAuth: the key file records that the key has an auth value.
	NeedsAuth bool `json:"needs_auth"`
	// AuthSource is where the reference says the auth value is.
	AuthSource string `json:"auth_source,omitempty"`
	// Sign: the key can sign too (accepted with allow-sign=true).
	Sign bool `json:"sign,omitempty"`
	// FixedTPM: made in this TPM and unable to leave it (false for an
	// imported key).
	FixedTPM bool `json:"fixed_tpm"`
}

// ListDetails describe what was listed, for scripts (JSON).
type ListDetails struct {
	Transport string `json:"transport"`
	Dir       string `json:"dir,omitempty"`
}

// authProblem is the Problem of a key that needs an auth value the
// reference has no source for.
const authProblem = "the key needs an auth value (its key file records one) and the reference names no source: " +
	"add auth-source=file:PATH or auth-source=env:NAME to it"

// info describes a key: k (nil when it could not be opened: then
// problem says why), found with the reference r in file and/or at h.
func info(r *tpm2.KeyRef, transport string, k *tpm2.Key, file string, h tpm2.Handle, problem error) *keystore.KeyInfo {
	if k != nil {
		if kh, ok := k.Handle(); ok && h == 0 {
			h = kh
		}
	}
	ref := Ref(r, file, 0)
	if file == "" {
		ref = Ref(r, "", h)
	}
	d := &Details{Transport: transport, AuthSource: r.AuthSource}
	i := &keystore.KeyInfo{Ref: ref, Backend: Scheme, Details: d}
	if file != "" {
		d.File = absPath(file)
		i.Name = d.File
	}
	if h != 0 {
		d.Handle = h.String()
		if file != "" {
			d.HandleRef = Ref(r, "", h)
		} else {
			i.Name = d.Handle
		}
	}
	i.Fields = append(i.Fields, keystore.Field{Name: "tpm", Value: transport})
	if d.File != "" {
		i.Fields = append(i.Fields, keystore.Field{Name: "key file", Value: d.File})
	}
	if d.Handle != "" {
		i.Fields = append(i.Fields, keystore.Field{Name: "handle", Value: d.Handle + " (persistent)"})
	}
	if d.HandleRef != "" {
		i.Fields = append(i.Fields, keystore.Field{Name: "by handle", Value: d.HandleRef})
	}
	if k == nil {
		if problem != nil {
			i.Problem = problem.Error()
		}
		return i
	}
	i.KEM, i.PublicKey = k.KEM(), k.PublicKeyBytes()
	a := k.Attributes()
	d.NeedsAuth, d.Sign, d.FixedTPM = k.NeedsAuth(), a.Sign, a.FixedTPM
	for _, x := range []struct {
		on   bool
		name string
	}{{a.FixedTPM, "fixedTPM"}, {a.Decrypt, "decrypt"}, {a.Sign, "sign"}, {d.NeedsAuth, "needs auth"}, {a.NoDA, "noDA"}} {
		if x.on {
			i.Attributes = append(i.Attributes, x.name)
		}
	}
	auth := "none (the key file records none)"
	switch {
	case d.NeedsAuth && r.AuthSource != "":
		auth = "from " + r.AuthSource
	case d.NeedsAuth:
		auth = "needed, and no source given"
	case file == "" && r.AuthSource != "":
		auth = "from " + r.AuthSource
	case file == "":
		auth = "none given (a persistent handle does not record whether its key has one)"
	}
	i.Fields = append(i.Fields, keystore.Field{Name: "auth value", Value: auth})
	if !a.FixedTPM {
		i.Fields = append(i.Fields, keystore.Field{Name: "origin", Value: "imported (not made in this TPM; it cannot leave it again)"})
	}
	if a.Sign {
		i.Fields = append(i.Fields, keystore.Field{Name: "sign", Value: "the key can also sign (accepted by allow-sign=true)"})
	}
	i.Usable = true
	if d.NeedsAuth && r.AuthSource == "" {
		i.Usable, i.Problem = false, authProblem
	}
	return i
}

// Create implements keystore.Store: a key made in the TPM (fixedTPM,
// decrypt only), written to file= (a new file, mode 0600) and/or made
// persistent at handle=. Its auth value is read from the reference's
// auth-source; without one the key has none.
func (st Store) Create(ctx context.Context, ref string, id kem.ID, o *keystore.Options) (*keystore.KeyInfo, error) {
	return st.make(ctx, ref, id, nil, o)
}

// Import implements keystore.Store: the private key (P-256, P-384 or
// P-521) wrapped for this TPM under its storage root key, written to
// file= and/or made persistent at handle=. The key is not fixedTPM (it
// existed outside), but it cannot be duplicated out again.
func (st Store) Import(ctx context.Context, ref string, m *keystore.Material, o *keystore.Options) (*keystore.KeyInfo, error) {
	if err := keystore.RefuseInlineSecret(ref); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("tpm2store: no key material to import")
	}
	return st.make(ctx, ref, m.KEM, m, o)
}

func (st Store) make(ctx context.Context, ref string, id kem.ID, m *keystore.Material, o *keystore.Options) (*keystore.KeyInfo, error) {
	r, err := parseKey(ref, "say where the key goes: file=PATH (a key file, recommended) and/or handle=0x81000010 (a persistent handle), e.g. tpm2:file=/etc/twoway/gw.pem")
	if err != nil {
		return nil, err
	}
	if r.Dir != "" {
		return nil, invalid("dir= lists key files; name the new one with file=")
	}
	if !slices.Contains(KEMs, id) {
		return nil, wrap(fmt.Errorf("%w: a TPM key can be P-256, P-384 or P-521 (as the TPM implements them), not %v", tpm2.ErrUnsupportedCurve, id))
	}
	if r.File != "" {
		if err := checkNewFile(r.File); err != nil {
			return nil, err
		}
	}
	t, err := st.open(ctx, r, o)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	curve := id.Curve()
	have, err := t.Curves(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	if !slices.Contains(have, curve) {
		var names []string
		for _, c := range have {
			if cid, err := kem.IDForCurve(c); err == nil {
				names = append(names, cid.String())
			}
		}
		return nil, wrap(fmt.Errorf("%w: the TPM at %s does not implement the curve of %v (it has: %s)", tpm2.ErrUnsupportedCurve, t.Transport(), id, strings.Join(names, "; ")))
	}
	if r.Handle != 0 {
		hs, err := t.PersistentHandles(ctx)
		if err != nil {
			return nil, wrap(err)
		}
		if slices.Contains(hs, r.Handle) {
			return nil, wrap(fmt.Errorf("%w: %v holds another object", tpm2.ErrHandleInUse, r.Handle))
		}
	}
	opts := st.options(r, o)
	var k *tpm2.Key
	if m == nil {
		k, err = t.CreateKey(ctx, curve, opts...)
	} else {
		p, perr := curve.NewPrivateKey(m.Secret)
		if perr != nil {
			return nil, fmt.Errorf("tpm2store: the %v private key is invalid: %w", id, perr)
		}
		k, err = t.ImportKey(ctx, p, opts...)
	}
	if err != nil {
		return nil, wrap(err)
	}
	defer k.Close()
	if r.File != "" {
		if err := k.WriteKeyFile(r.File); err != nil {
			return nil, wrap(err)
		}
	}
	if r.Handle != 0 {
		if err := k.Persist(ctx, r.Handle); err != nil {
			if r.File != "" {
				os.Remove(r.File)
			}
			return nil, wrap(err)
		}
	}
	return info(r, t.Transport(), k, r.File, r.Handle, nil), nil
}

// checkNewFile refuses a path that exists, or whose directory does not.
func checkNewFile(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return wrap(fmt.Errorf("tpm2store: %s exists (key files are never overwritten): %w", absPath(path), fs.ErrExist))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("tpm2store: directory %s does not exist: create it first (mode 0700 is a good choice for key files)", absPath(dir))
	}
	return nil
}

// readKeyFile reads a key file, which must be a TSS2 PRIVATE KEY PEM
// file, before the TPM is reached.
func readKeyFile(path string) ([]byte, error) {
	b, typ, err := keystore.ReadPEMFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, wrap(fmt.Errorf("%w: %s", tpm2.ErrKeyFileNotFound, absPath(path)))
		}
		return nil, err
	}
	if typ != keystore.TPMKeyPEMType {
		clear(b)
		what := "no PEM block"
		if typ != "" {
			what = "a " + typ + " PEM block"
		}
		return nil, fmt.Errorf("%w: %s holds %s, not a TPM key file (%s)", tpm2.ErrInvalidKeyFile, absPath(path), what, keystore.TPMKeyPEMType)
	}
	return b, nil
}

// describe opens the key r names (by its file when it has one) without
// its auth value and describes it. A key the TPM has but this package
// cannot use (a storage key, a sign key without allow-sign, a key file of
// another TPM) is described with the reason as its Problem; other errors
// are returned.
func (st Store) describe(ctx context.Context, t *tpm2.TPM, r *tpm2.KeyRef, file []byte, o *keystore.Options) (*keystore.KeyInfo, error) {
	var k *tpm2.Key
	var err error
	if file != nil {
		k, err = t.LoadKey(ctx, file, st.options(r, o)...)
	} else {
		k, err = t.OpenHandle(ctx, r.Handle, st.options(r, o)...)
	}
	if err != nil {
		if errors.Is(err, tpm2.ErrUnsupportedKey) || errors.Is(err, tpm2.ErrUnsupportedCurve) || errors.Is(err, tpm2.ErrWrongTPM) {
			return info(r, t.Transport(), nil, r.File, r.Handle, err), nil
		}
		if r.File != "" {
			err = fmt.Errorf("%s: %w", absPath(r.File), err)
		}
		return nil, wrap(err)
	}
	defer k.Close()
	return info(r, t.Transport(), k, r.File, r.Handle, nil), nil
}

// Show implements keystore.Store: the key file or persistent handle the
// reference names, loaded without its auth value. A key that needs an
// auth value the reference has no source for is shown unusable, saying
// which source to add.
func (st Store) Show(ctx context.Context, ref string, o *keystore.Options) (*keystore.KeyInfo, error) {
	r, err := parseKey(ref, "name the key with file=PATH or handle=0x81......; 'twoway-hsm keys list' lists keys")
	if err != nil {
		return nil, err
	}
	var file []byte
	if r.File != "" {
		if file, err = readKeyFile(r.File); err != nil {
			return nil, err
		}
	}
	t, err := st.open(ctx, r, o)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	return st.describe(ctx, t, r, file, o)
}

// List implements keystore.Store: tpm2:?tpm=... lists the TPM's
// persistent handles, whether each holds a usable key or not (the storage
// root key, other tools' objects); tpm2:dir=DIR?tpm=... the TPM key files
// in DIR, in the order of their names.
func (st Store) List(ctx context.Context, ref string, o *keystore.Options) (*keystore.Listing, error) {
	r, err := parse(ref)
	if err != nil {
		return nil, err
	}
	if r.Key() {
		return nil, invalid("list takes tpm2:?tpm=TRANSPORT (the persistent handles) or tpm2:dir=DIR (key files); to describe one key, show it")
	}
	type keyFile struct {
		path string
		data []byte
	}
	var files []keyFile
	if r.Dir != "" {
		ents, err := os.ReadDir(r.Dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, wrap(fmt.Errorf("%w: directory %s", tpm2.ErrKeyFileNotFound, absPath(r.Dir)))
			}
			return nil, err
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			p := filepath.Join(r.Dir, e.Name())
			if b, typ, err := keystore.ReadPEMFile(p); err == nil && typ == keystore.TPMKeyPEMType {
				files = append(files, keyFile{path: p, data: b})
			}
		}
	}
	t, err := st.open(ctx, r, o)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	l := &keystore.Listing{Backend: Scheme, Keys: []*keystore.KeyInfo{}}
	// Listed keys carry the list reference's tpm= and allow-sign, not its
	// auth-source: one source hardly serves every key.
	each := &tpm2.KeyRef{TPM: r.TPM, AllowSign: r.AllowSign}
	if r.Dir != "" {
		dir := absPath(r.Dir)
		l.Title = fmt.Sprintf("TPM key files in %s (TPM %s)", dir, t.Transport())
		l.Details = &ListDetails{Transport: t.Transport(), Dir: dir}
		for _, f := range files {
			fr := *each
			fr.File = f.path
			i, err := st.describe(ctx, t, &fr, f.data, o)
			if err != nil {
				i = info(&fr, t.Transport(), nil, f.path, 0, err)
			}
			l.Keys = append(l.Keys, i)
		}
		return l, nil
	}
	l.Title = fmt.Sprintf("persistent handles of the TPM at %s", t.Transport())
	l.Details = &ListDetails{Transport: t.Transport()}
	hs, err := t.PersistentHandles(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	for _, h := range hs {
		hr := *each
		hr.Handle = h
		i, err := st.describe(ctx, t, &hr, nil, o)
		if err != nil {
			i = info(&hr, t.Transport(), nil, "", h, err)
		}
		if h == tpm2.SRKHandle && !i.Usable && i.KEM == 0 {
			i.Problem = "the storage root key (not an ECDH key)"
		}
		l.Keys = append(l.Keys, i)
	}
	return l, nil
}

// Delete implements keystore.Store: evicts handle= and/or removes file=,
// after confirm has seen the key. It never evicts the storage root key or
// an object that is not an ECDH key it can use, and never removes a file
// that is not a TPM key file. A key file is removed even when the TPM
// cannot be reached to describe its key.
func (st Store) Delete(ctx context.Context, ref string, confirm func(*keystore.KeyInfo) error, o *keystore.Options) (*keystore.Deletion, error) {
	r, err := parseKey(ref, "name the key to delete with file=PATH and/or handle=0x81......")
	if err != nil {
		return nil, err
	}
	if r.Handle == tpm2.SRKHandle {
		return nil, wrap(fmt.Errorf("%w: %v is the storage root key's handle; twoway-hsm never evicts it", tpm2.ErrUnsupportedKey, r.Handle))
	}
	var file []byte
	if r.File != "" {
		if file, err = readKeyFile(r.File); err != nil {
			if errors.Is(err, tpm2.ErrInvalidKeyFile) {
				err = fmt.Errorf("%w; not deleting it", err)
			}
			return nil, err
		}
	}
	t, terr := tpm2.Open(ctx, r.TPM, st.options(r, o)...)
	if terr == nil {
		defer t.Close()
	}
	var i *keystore.KeyInfo
	switch {
	case terr != nil && r.Handle != 0:
		return nil, wrap(terr)
	case terr != nil:
		i = info(r, r.Transport(), nil, r.File, 0, terr)
	case r.Handle != 0:
		// The handle must hold an ECDH key: never evict the SRK or
		// another tool's objects.
		k, err := t.OpenHandle(ctx, r.Handle, st.options(r, o)...)
		if errors.Is(err, tpm2.ErrUnsupportedKey) {
			return nil, wrap(fmt.Errorf("%v holds no ECDH key twoway-hsm can use (0x81000001 is usually the storage root key); it evicts only such keys: %w", r.Handle, err))
		} else if err != nil {
			return nil, wrap(err)
		}
		k.Close()
		if file != nil {
			i, err = st.describe(ctx, t, r, file, o)
			if err != nil {
				i = info(r, t.Transport(), nil, r.File, r.Handle, err)
			}
		} else if i, err = st.describe(ctx, t, r, nil, o); err != nil {
			i = info(r, t.Transport(), nil, "", r.Handle, err)
		}
	default:
		if i, err = st.describe(ctx, t, r, file, o); err != nil {
			i = info(r, t.Transport(), nil, r.File, 0, err)
		}
	}
	if err := confirm(i); err != nil {
		return nil, err
	}
	d := &keystore.Deletion{Key: i}
	if r.Handle != 0 {
		if err := t.EvictHandle(ctx, r.Handle); err != nil {
			return nil, wrap(err)
		}
		d.Deleted = append(d.Deleted, "persistent handle "+r.Handle.String()+" in the TPM at "+t.Transport())
	}
	if r.File != "" {
		if err := os.Remove(r.File); err != nil {
			return d, err
		}
		d.Deleted = append(d.Deleted, "key file "+absPath(r.File))
	}
	return d, nil
}

// Public implements keystore.Store: the key's public key, from the key
// loaded without its auth value (loading needs none), so that a key file
// of another TPM is not published.
func (st Store) Public(ctx context.Context, ref string, o *keystore.Options) (kem.ID, []byte, error) {
	r, err := parseKey(ref, "name the key with file=PATH or handle=0x81......")
	if err != nil {
		return 0, nil, err
	}
	var file []byte
	if r.File != "" {
		if file, err = readKeyFile(r.File); err != nil {
			return 0, nil, err
		}
	}
	t, err := st.open(ctx, r, o)
	if err != nil {
		return 0, nil, err
	}
	defer t.Close()
	var k *tpm2.Key
	if file != nil {
		k, err = t.LoadKey(ctx, file, st.options(r, o)...)
	} else {
		k, err = t.OpenHandle(ctx, r.Handle, st.options(r, o)...)
	}
	if err != nil {
		return 0, nil, wrap(err)
	}
	defer k.Close()
	return k.KEM(), k.PublicKeyBytes(), nil
}

// Open implements keystore.Store: the key, which stays in the TPM; the
// reference names it by file= or handle= (one of them). The returned key
// is a *Key (a *tpm2.Key): besides keystore.Key it implements
// kem.Exchanger, crypto/ecdh.KeyExchanger and keystore.Attester. A key file that records an auth value is
// opened with the reference's auth-source, else with o.Secret (asked
// once), else refused before the TPM is asked, with an error wrapping
// keystore.ErrSecretRequired and tpm2.ErrAuthRequired.
func (st Store) Open(ctx context.Context, ref string, o *keystore.Options) (keystore.Key, error) {
	r, err := parseKey(ref, "name the key with file=PATH or handle=0x81......")
	if err != nil {
		return nil, err
	}
	opts := append(slices.Clone(st.Options), tpm2.WithLogger(o.Log()))
	if f := o.SecretFunc(); f != nil && r.AuthSource == "" {
		what := "auth value of the TPM key " + Ref(r, r.File, r.Handle)
		opts = append(opts, tpm2.WithAuthPrompt(func() ([]byte, error) { return f(what) }))
	}
	k, err := tpm2.OpenKey(ctx, ref, opts...)
	if err != nil {
		return nil, wrap(err)
	}
	return &Key{k}, nil
}

// IsAuthFailure reports whether err means that the TPM refused the auth
// value or is in lockout, which retrying does not cure and may make
// worse.
func IsAuthFailure(err error) bool {
	return errors.Is(err, tpm2.ErrAuthFail) || errors.Is(err, tpm2.ErrLockout)
}

// Hint says what to do about an error of the store (or of package
// hsm/tpm2), or "".
func Hint(err error) string {
	switch {
	case errors.Is(err, tpm2.ErrNotTPM):
		return "tpm= must name the TPM's data channel: /dev/tpmrm0, or swtpm's --server socket or port (not its --ctrl one; 'twoway-hsm env up' prints the tpm= to use)"
	case errors.Is(err, tpm2.ErrNoAnswer):
		return "swtpm serves one connection at a time: stop the other client (a running gateway or plugin, tpm2-tools, openssl) or give this one a TPM of its own; a real TPM is reached through /dev/tpmrm0, which many clients share"
	case errors.Is(err, tpm2.ErrTPMUnavailable):
		return "for /dev/tpmrm0 check that the device exists and that you are in the tss group (sudo usermod -aG tss $USER, then log in again); for swtpm check that it runs and that tpm= names its data port or socket ('twoway-hsm env up' starts one)"
	case errors.Is(err, tpm2.ErrAuthRequired):
		return "the key has an auth value: add auth-source=file:PATH or auth-source=env:NAME to the reference's query, or give --pin-file FILE or --pin-env NAME; without it twoway-hsm does not try the key, so no attempt counts towards the TPM's lockout"
	case errors.Is(err, tpm2.ErrInvalidAuth):
		return "check auth-source= (file:PATH or env:NAME): the file must be readable and not empty, the variable set; an auth value has at most 32 bytes"
	case errors.Is(err, tpm2.ErrKeyFileNotFound):
		return "check the file= path; 'twoway-hsm keys list tpm2:dir=DIR' lists the key files in a directory"
	case errors.Is(err, tpm2.ErrWrongTPM):
		return "a TPM key file works only in the TPM that made it: check tpm= (and that the TPM was not cleared)"
	case errors.Is(err, tpm2.ErrAuthFail):
		return "the key's auth value is wrong (--pin-file, --pin-env or auth-source=); every failure counts towards the TPM's dictionary-attack lockout"
	case errors.Is(err, tpm2.ErrLockout):
		return "wait for the TPM's lockout recovery time, or reset the lockout with the lockout hierarchy's auth (tpm2_dictionarylockout --clear-lockout)"
	case errors.Is(err, tpm2.ErrHandleInUse):
		return "choose another handle= (0x81000000-0x817fffff); 'twoway-hsm keys list tpm2:?tpm=...' shows the handles in use"
	case errors.Is(err, tpm2.ErrKeyNotFound):
		return "'twoway-hsm keys list tpm2:?tpm=...' shows the persistent handles in use"
	case errors.Is(err, tpm2.ErrUnsupportedCurve):
		return "TPM keys can be p256, p384 or p521 where the TPM implements the curve; p256 works everywhere"
	case errors.Is(err, tpm2.ErrUnsupportedKey) && strings.Contains(err.Error(), "allow-sign"):
		return "add allow-sign=true to the reference's query to use a key that can also sign (tpm2-openssl's and tpm2_create's EC keys), or make a decrypt-only key with 'twoway-hsm keys create'"
	case errors.Is(err, tpm2.ErrInvalidKeyRef) && strings.Contains(err.Error(), "unknown"):
		return "a tpm2: reference has file=, handle= or dir= (path) and tpm=, auth-source=, allow-sign= (query); vendor attributes start with x-"
	case errors.Is(err, fs.ErrExist):
		return "key files are never overwritten: choose another file= or delete the old key with 'twoway-hsm keys delete'"
	}
	return ""
}

// Check implements keystore.Store: the reference parses and names one
// key by file= or handle=.
func (st Store) Check(ref string) error {
	r, err := parseKey(ref, "name the key with file=PATH or handle=0x81......")
	if err != nil {
		return err
	}
	if r.File != "" && r.Handle != 0 {
		return invalid("%s: a key is opened by file= or by handle=, not both", r)
	}
	return nil
}
