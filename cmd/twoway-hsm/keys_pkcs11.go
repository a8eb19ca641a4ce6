package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// pkcs11Session is an open token and what the output references need.
type pkcs11Session struct {
	uri *pkcs11.URI
	tok *pkcs11.Token
	// modulePath is the module as the URI names it or as it was found
	// (TokenInfo.ModulePath has symlinks resolved): what references print.
	modulePath string
}

// modulePathFor returns the module a URI names, or the SoftHSM2 found on
// this machine. (pkcs11.OpenToken finds it too, but reports only the
// module's real path.)
func modulePathFor(u *pkcs11.URI) (string, error) {
	if u.ModulePath != "" {
		return u.ModulePath, nil
	}
	p, err := softhsm.FindModule("")
	if err != nil {
		return "", fmt.Errorf("%w: the URI has no module-path and %v", pkcs11.ErrModuleNotFound, err)
	}
	return p, nil
}

// openToken parses the URI, gets the PIN (flags, URI, prompt) and opens
// and logs in to the token.
func (c *secretCmd) openToken(ctx context.Context, ref string) (*pkcs11Session, error) {
	u, err := parsePKCS11(ref)
	if err != nil {
		return nil, err
	}
	if err := c.secrets.checkRef(ref); err != nil {
		return nil, err
	}
	mp, err := modulePathFor(u)
	if err != nil {
		return nil, err
	}
	// When the PIN would be asked for on the terminal, first find out
	// whether the token exists and needs one, so that nobody types a PIN
	// for a token that is not there.
	if c.secrets.file == "" && c.secrets.env == "" && !hasURISource(ref) && stdinIsTerminal(c.env) {
		tok, err := pkcs11.OpenToken(ctx, ref, pkcs11.WithModulePath(mp))
		if err == nil {
			return &pkcs11Session{uri: u, tok: tok, modulePath: mp}, nil
		}
		if !errors.Is(err, pkcs11.ErrPINSource) {
			return nil, err
		}
	}
	opts, err := c.secrets.pkcs11Options(c.env, ref)
	if err != nil {
		return nil, err
	}
	tok, err := pkcs11.OpenToken(ctx, ref, append(opts, pkcs11.WithModulePath(mp))...)
	if err != nil {
		return nil, err
	}
	return &pkcs11Session{uri: u, tok: tok, modulePath: mp}, nil
}

// openTokenKeys opens the token and lists its private keys, sorted by id
// and label. The caller closes s.tok.
func (c *secretCmd) openTokenKeys(ctx context.Context, ref string) (*pkcs11Session, []pkcs11.KeyInfo, error) {
	s, err := c.openToken(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	keys, err := s.tok.ListKeys(ctx)
	if err != nil {
		s.tok.Close()
		return nil, nil, err
	}
	slices.SortStableFunc(keys, func(a, b pkcs11.KeyInfo) int {
		if c := bytes.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Label, b.Label)
	})
	return s, keys, nil
}

// pkcs11View describes a key on the token. Its reference names the token's
// label and serial, the key's id and label, the module path, and the PIN
// source (the URI's, else --pin-file or --pin-env); never a pin-value.
func (c *secretCmd) pkcs11View(s *pkcs11Session, info pkcs11.KeyInfo) *keyView {
	ti := s.tok.Info()
	u := &pkcs11.URI{
		Token:      pkcs11.TokenSelector{Label: ti.Label, Serial: ti.Serial},
		Key:        pkcs11.KeyRef{ID: info.ID, Label: info.Label},
		ModulePath: s.modulePath,
		PINSource:  absSource(s.uri.PINSource),
	}
	if u.PINSource == "" {
		u.PINSource = c.pinSourceForRef("file:")
	}
	v := &keyView{Ref: u.String(), Backend: schemePKCS11, Usable: info.Unusable == nil}
	v.setKEM(info.KEM, info.PublicKey)
	if info.Unusable != nil {
		v.Problem = info.Unusable.Error()
	}
	a := info.Attributes
	v.PKCS11 = &pkcs11View{
		Token: ti.Label, Serial: ti.Serial, ModulePath: s.modulePath,
		ID: hex.EncodeToString(info.ID), Label: info.Label, KeyType: info.KeyType, Curve: info.Curve,
		Attributes: pkcs11Attrib{
			Sensitive: a.Sensitive, Extractable: a.Extractable, Derive: a.Derive, Token: a.Token,
			Private: a.Private, AlwaysSensitive: a.AlwaysSensitive, NeverExtractable: a.NeverExtractable, Local: a.Local,
		},
	}
	return v
}

// matchKey reports whether a key has the id and label ref names (each
// when given).
func matchKey(info pkcs11.KeyInfo, ref pkcs11.KeyRef) bool {
	return (len(ref.ID) == 0 || bytes.Equal(info.ID, ref.ID)) && (ref.Label == "" || info.Label == ref.Label)
}

// pkcs11Create generates (m == nil) or imports a key on the token.
func (c *secretCmd) pkcs11Create(ctx context.Context, ref string, id kem.ID, m *keyMaterial) (*keyView, error) {
	u, err := parsePKCS11(ref)
	if err != nil {
		return nil, err
	}
	if u.Key.IsZero() {
		return nil, usagef("the URI must name the new key: add id=%%01 (CKA_ID) and/or object=LABEL (CKA_LABEL), e.g. pkcs11:token=dev;id=%%01;object=gw")
	}
	if !id.IsDH() {
		return nil, usagef("a PKCS#11 key can be p256, p384, p521, x25519 or x448 (as the token allows), not %s; ML-KEM and X-Wing keys exist here only as soft keys", kemShort(id))
	}
	s, existing, err := c.openTokenKeys(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	label := s.tok.Info().Label
	for _, k := range existing {
		if len(u.Key.ID) > 0 && bytes.Equal(k.ID, u.Key.ID) {
			return nil, fmt.Errorf("%w: %s on token %q (the existing key: %s, labelled %q)", pkcs11.ErrKeyExists, pkcs11.KeyRef{ID: k.ID}, label, kemOrKeyType(k), k.Label)
		}
		if u.Key.Label != "" && k.Label == u.Key.Label {
			return nil, fmt.Errorf("%w: object=%s on token %q (id %x); two keys with one label make object= references ambiguous", errLabelExists, u.Key.Label, label, k.ID)
		}
	}
	var key *pkcs11.Key
	switch {
	case m == nil:
		key, err = s.tok.GenerateKey(ctx, id, u.Key)
	case id == kem.DHKEMX448HKDFSHA512:
		key, err = s.tok.ImportX448Key(ctx, m.secret, u.Key)
	default:
		priv, perr := id.Curve().NewPrivateKey(m.secret)
		if perr != nil {
			return nil, fmt.Errorf("the %s private key is invalid: %w", kemShort(id), perr)
		}
		key, err = s.tok.ImportKey(ctx, priv, u.Key)
	}
	if err != nil {
		return nil, err
	}
	return c.pkcs11View(s, key.Info()), nil
}

func kemOrKeyType(k pkcs11.KeyInfo) string {
	if k.KEM != 0 {
		return kemShort(k.KEM)
	}
	return k.KeyType
}

// pkcs11List lists the private keys on the token (filtered by id= and
// object= when the URI has them).
func (c *secretCmd) pkcs11List(ctx context.Context, ref string) (*listView, error) {
	s, keys, err := c.openTokenKeys(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	ti := s.tok.Info()
	l := &listView{Backend: schemePKCS11, Keys: []*keyView{},
		Token: &tokenView{Label: ti.Label, Serial: ti.Serial, Manufacturer: ti.Manufacturer, Model: ti.Model, ModulePath: s.modulePath}}
	for _, k := range keys {
		if matchKey(k, s.uri.Key) {
			l.Keys = append(l.Keys, c.pkcs11View(s, k))
		}
	}
	return l, nil
}

// pkcs11Find opens the token and finds the one key the URI names, usable
// or not. The caller closes s.tok.
func (c *secretCmd) pkcs11Find(ctx context.Context, ref string) (*pkcs11Session, pkcs11.KeyInfo, error) {
	u, err := parsePKCS11(ref)
	if err != nil {
		return nil, pkcs11.KeyInfo{}, err
	}
	if u.Key.IsZero() {
		return nil, pkcs11.KeyInfo{}, usagef("the URI must name the key with id= and/or object= (without them, use 'twoway-hsm keys list')")
	}
	s, keys, err := c.openTokenKeys(ctx, ref)
	if err != nil {
		return nil, pkcs11.KeyInfo{}, err
	}
	var found []pkcs11.KeyInfo
	for _, k := range keys {
		if matchKey(k, u.Key) {
			found = append(found, k)
		}
	}
	if len(found) == 1 {
		return s, found[0], nil
	}
	label := s.tok.Info().Label
	s.tok.Close()
	if len(found) == 0 {
		return nil, pkcs11.KeyInfo{}, fmt.Errorf("%w: no private key with %s on token %q", pkcs11.ErrKeyNotFound, u.Key, label)
	}
	var ids []string
	for _, k := range found {
		ids = append(ids, fmt.Sprintf("id %x", k.ID))
	}
	return nil, pkcs11.KeyInfo{}, fmt.Errorf("%w: %s on token %q matches %s", pkcs11.ErrKeyAmbiguous, u.Key, label, strings.Join(ids, ", "))
}

func (c *secretCmd) pkcs11Show(ctx context.Context, ref string) (*keyView, error) {
	s, info, err := c.pkcs11Find(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	return c.pkcs11View(s, info), nil
}

func (c *secretCmd) pkcs11Delete(ctx context.Context, ref string, confirm func(*keyView) error) (*deleteView, error) {
	s, info, err := c.pkcs11Find(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	v := c.pkcs11View(s, info)
	if err := confirm(v); err != nil {
		return nil, err
	}
	// Delete by the key's own id (and label), so exactly this key goes.
	target := pkcs11.KeyRef{ID: info.ID, Label: info.Label}
	if len(target.ID) == 0 {
		target = s.uri.Key
	}
	if err := s.tok.DeleteKey(ctx, target); err != nil {
		return nil, err
	}
	return &deleteView{Deleted: []string{"pkcs11 key " + pkcs11.RedactURI(v.Ref)}, Key: v}, nil
}

// pkcs11Public returns the KEM and public key of a key for key-config
// with the least privilege that works: the public key object read in a
// read-only session without logging in (pkcs11.ReadPublicKey), and only if
// the token keeps none, the key found after logging in (which may need a
// PIN).
func (c *secretCmd) pkcs11Public(ctx context.Context, ref string) (kem.ID, []byte, error) {
	u, err := parsePKCS11(ref)
	if err != nil {
		return 0, nil, err
	}
	if u.Key.IsZero() {
		return 0, nil, usagef("%s: the URI must name the key with id= and/or object=", safeRef(ref))
	}
	if err := c.secrets.checkRef(ref); err != nil {
		return 0, nil, err
	}
	id, pub, err := pkcs11.ReadPublicKey(ctx, ref)
	if err == nil {
		return id, pub, nil
	}
	if !errors.Is(err, pkcs11.ErrPublicKeyNotFound) && !errors.Is(err, pkcs11.ErrKeyAmbiguous) {
		return 0, nil, err // no such token or module: no PIN would help
	}
	s, err := c.openToken(ctx, ref)
	if err != nil {
		return 0, nil, err
	}
	defer s.tok.Close()
	k, err := s.tok.FindKey(ctx, u.Key)
	if err != nil {
		return 0, nil, err
	}
	return k.KEM(), k.PublicKeyBytes(), nil
}
