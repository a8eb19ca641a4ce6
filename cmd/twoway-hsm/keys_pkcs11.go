package main

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"

	p11 "github.com/miekg/pkcs11"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/hsm/softhsm"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// pkcs11Session is an open token and what the output references need.
type pkcs11Session struct {
	uri        *pkcs11.URI
	tok        *pkcs11.Token
	modulePath string
}

// modulePathFor returns the module a URI names, or the SoftHSM2 found on
// this machine.
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

// pkcs11OutRef returns the reference to print for a key: the token's
// label and serial, the key's id and label, the module path, and the PIN
// source (the URI's, else --pin-file or --pin-env); never a pin-value.
func (c *secretCmd) pkcs11OutRef(s *pkcs11Session, info pkcs11.KeyInfo) string {
	u := &pkcs11.URI{
		Token:      pkcs11.TokenSelector{Label: s.tok.Info().Label, Serial: s.tok.Info().Serial},
		Key:        pkcs11.KeyRef{ID: info.ID, Label: info.Label},
		ModulePath: s.modulePath,
		PINSource:  absSource(s.uri.PINSource),
	}
	if u.PINSource == "" {
		u.PINSource = c.pinSourceForRef("file:")
	}
	return u.String()
}

func (c *secretCmd) pkcs11View(s *pkcs11Session, info pkcs11.KeyInfo) *keyView {
	v := pkcs11KeyView(c.pkcs11OutRef(s, info), s.tok.Info(), info)
	v.PKCS11.ModulePath = s.modulePath
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
	s, err := c.openToken(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	existing, err := s.tok.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
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
	s, err := c.openToken(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	keys, err := s.tok.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	ti := s.tok.Info()
	l := &listView{Backend: schemePKCS11, Keys: []*keyView{},
		Token: &tokenView{Label: ti.Label, Serial: ti.Serial, Manufacturer: ti.Manufacturer, Model: ti.Model, ModulePath: s.modulePath}}
	slices.SortStableFunc(keys, func(a, b pkcs11.KeyInfo) int {
		if c := bytes.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Label, b.Label)
	})
	for _, k := range keys {
		if matchKey(k, s.uri.Key) {
			l.Keys = append(l.Keys, c.pkcs11View(s, k))
		}
	}
	return l, nil
}

// pkcs11Find returns the one key the URI names, usable or not.
func (c *secretCmd) pkcs11Find(ctx context.Context, s *pkcs11Session) (pkcs11.KeyInfo, error) {
	ref := s.uri.Key
	if ref.IsZero() {
		return pkcs11.KeyInfo{}, usagef("the URI must name the key with id= and/or object= (without them, use 'twoway-hsm keys list')")
	}
	keys, err := s.tok.ListKeys(ctx)
	if err != nil {
		return pkcs11.KeyInfo{}, err
	}
	var found []pkcs11.KeyInfo
	for _, k := range keys {
		if matchKey(k, ref) {
			found = append(found, k)
		}
	}
	label := s.tok.Info().Label
	switch len(found) {
	case 0:
		return pkcs11.KeyInfo{}, fmt.Errorf("%w: no private key with %s on token %q", pkcs11.ErrKeyNotFound, ref, label)
	case 1:
		return found[0], nil
	}
	var ids []string
	for _, k := range found {
		ids = append(ids, fmt.Sprintf("id %x", k.ID))
	}
	return pkcs11.KeyInfo{}, fmt.Errorf("%w: %s on token %q matches %s", pkcs11.ErrKeyAmbiguous, ref, label, strings.Join(ids, ", "))
}

func (c *secretCmd) pkcs11Show(ctx context.Context, ref string) (*keyView, error) {
	s, err := c.openToken(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	info, err := c.pkcs11Find(ctx, s)
	if err != nil {
		return nil, err
	}
	return c.pkcs11View(s, info), nil
}

func (c *secretCmd) pkcs11Delete(ctx context.Context, ref string, confirm func(*keyView) error) (*deleteView, error) {
	s, err := c.openToken(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	info, err := c.pkcs11Find(ctx, s)
	if err != nil {
		return nil, err
	}
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

// errNeedLogin means the public key could not be read without logging in.
var errNeedLogin = errors.New("public key not readable without login")

// pkcs11Public returns the KEM and public key of a key for key-config
// with the least privilege that works: the public key object read in a
// read-only session without logging in, and only if that fails, the key
// found after logging in (which may need a PIN).
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
	mp, err := modulePathFor(u)
	if err != nil {
		return 0, nil, err
	}
	id, pub, err := publicKeyWithoutLogin(u, mp)
	if err == nil {
		return id, pub, nil
	}
	if !errors.Is(err, errNeedLogin) {
		return 0, nil, err
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

// Named curves in CKA_EC_PARAMS, for reading public key objects.
var ecParamsCurves = []struct {
	oid asn1.ObjectIdentifier
	id  kem.ID
}{
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, kem.DHKEMP256HKDFSHA256},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 34}, kem.DHKEMP384HKDFSHA384},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 35}, kem.DHKEMP521HKDFSHA512},
	{asn1.ObjectIdentifier{1, 3, 101, 110}, kem.DHKEMX25519HKDFSHA256},
	{asn1.ObjectIdentifier{1, 3, 101, 111}, kem.DHKEMX448HKDFSHA512},
}

// kemFromECParams maps CKA_EC_PARAMS (a named curve OID, or PKCS#11 3.0's
// PrintableString curve names) to a DHKEM.
func kemFromECParams(params []byte) (kem.ID, bool) {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err == nil && len(rest) == 0 {
		for _, c := range ecParamsCurves {
			if c.oid.Equal(oid) {
				return c.id, true
			}
		}
		return 0, false
	}
	var name string
	if rest, err := asn1.UnmarshalWithParams(params, &name, "printable"); err == nil && len(rest) == 0 {
		switch strings.ToLower(name) {
		case "curve25519", "x25519":
			return kem.DHKEMX25519HKDFSHA256, true
		case "curve448", "x448":
			return kem.DHKEMX448HKDFSHA512, true
		}
	}
	return 0, false
}

// ecPoint returns the serialized public key from CKA_EC_POINT, which
// tokens store DER-wrapped in an OCTET STRING (or, some, raw).
func ecPoint(id kem.ID, v []byte) ([]byte, bool) {
	if len(v) == id.PublicKeySize() && kem.CheckPublicKey(id, v) == nil {
		return v, true
	}
	var inner []byte
	if rest, err := asn1.Unmarshal(v, &inner); err == nil && len(rest) == 0 && kem.CheckPublicKey(id, inner) == nil {
		return inner, true
	}
	return nil, false
}

// publicKeyWithoutLogin reads the public key object of the key u names in
// a read-only session, without a PIN. errNeedLogin means it could not
// (no public object visible, or none that matches exactly one key); other
// errors are about the module or the token and logging in would not help.
func publicKeyWithoutLogin(u *pkcs11.URI, modulePath string) (kem.ID, []byte, error) {
	mod, err := pkcs11.OpenModule(modulePath)
	if err != nil {
		return 0, nil, err
	}
	defer mod.Close()
	c := mod.Ctx()
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, nil, fmt.Errorf("pkcs11: C_GetSlotList: %w", err)
	}
	trim := func(s string) string { return strings.TrimRight(s, " \x00") }
	match := func(want, have string) bool { return want == "" || want == trim(have) }
	var slot uint
	n := 0
	var seen []string
	for _, sl := range slots {
		ti, err := c.GetTokenInfo(sl)
		if err != nil || ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		seen = append(seen, fmt.Sprintf("%q (serial %s)", trim(ti.Label), trim(ti.SerialNumber)))
		sel := u.Token
		if !match(sel.Label, ti.Label) || !match(sel.Serial, ti.SerialNumber) || !match(sel.Manufacturer, ti.ManufacturerID) || !match(sel.Model, ti.Model) {
			continue
		}
		if sel.SlotID != nil && *sel.SlotID != sl {
			continue
		}
		slot = sl
		n++
	}
	rare := u.Token.SlotDescription != "" || u.Token.SlotManufacturer != "" || u.Token.LibraryManufacturer != "" || u.Token.LibraryDescription != ""
	if n == 0 && !rare {
		// No token to log in to either: say so now, before a PIN is
		// asked for.
		avail := "none"
		if len(seen) > 0 {
			avail = strings.Join(seen, ", ")
		}
		sel := strings.TrimPrefix((&pkcs11.URI{Token: u.Token}).String(), "pkcs11:")
		if sel == "" {
			sel = "any token"
		}
		return 0, nil, fmt.Errorf("%w: nothing matches %s in %s (initialised tokens: %s)", pkcs11.ErrTokenNotFound, sel, modulePath, avail)
	}
	if n != 1 || u.Token.SlotDescription != "" || u.Token.SlotManufacturer != "" || u.Token.LibraryManufacturer != "" || u.Token.LibraryDescription != "" {
		// Let the library's token search explain (or handle the rarer
		// attributes).
		return 0, nil, errNeedLogin
	}
	sh, err := c.OpenSession(slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		return 0, nil, errNeedLogin
	}
	defer c.CloseSession(sh)
	tmpl := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY)}
	if len(u.Key.ID) > 0 {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_ID, u.Key.ID))
	}
	if u.Key.Label != "" {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_LABEL, u.Key.Label))
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return 0, nil, errNeedLogin
	}
	hs, _, err := c.FindObjects(sh, 2)
	c.FindObjectsFinal(sh)
	if err != nil || len(hs) != 1 {
		return 0, nil, errNeedLogin
	}
	attrs, err := c.GetAttributeValue(sh, hs[0], []*p11.Attribute{
		p11.NewAttribute(p11.CKA_EC_PARAMS, nil),
		p11.NewAttribute(p11.CKA_EC_POINT, nil),
	})
	if err != nil || len(attrs) != 2 {
		return 0, nil, errNeedLogin
	}
	id, ok := kemFromECParams(attrs[0].Value)
	if !ok {
		return 0, nil, errNeedLogin
	}
	pub, ok := ecPoint(id, attrs[1].Value)
	if !ok {
		return 0, nil, errNeedLogin
	}
	return id, bytes.Clone(pub), nil
}
