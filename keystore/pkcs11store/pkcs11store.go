// Package pkcs11store is the key store of keys on PKCS#11 tokens (package
// hsm/pkcs11). Importing the package registers it under the scheme
// "pkcs11". Keys are named by RFC 7512 URIs:
//
//	pkcs11:token=gw;id=%01;object=gw?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/twoway/gw.pin
//
// token= and serial= (also manufacturer=, model=, ...) select the token,
// id= (CKA_ID) and object= (CKA_LABEL) the key; List takes a URI without
// them (or filters by them). An attribute RFC 7512 does not define is an
// error that names it; x- vendor attributes are accepted. module-path
// names the vendor's PKCS#11 library; without it p11-kit's proxy module
// is used if it is installed (pkcs11.DefaultModulePath), never SoftHSM2.
//
// The user PIN comes from the URI's pin-source (file:PATH or env:NAME,
// read by package keystore/secret), else from [keystore.Options].Secret,
// which is asked only once the token was found and needs a login, so that
// nobody types a PIN for a token that is not there. A pin-value in the
// URI is refused by every method ([keystore.ErrInlineSecret]).
//
// The references the store prints ([keystore.KeyInfo].Ref) name the token
// by label and serial and the key by id and label, with the module-path
// exactly as the caller gave it and the pin-source in canonical form
// (file:/abs/path, env:NAME).
package pkcs11store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/secret"
)

// Scheme is the reference scheme of PKCS#11 keys.
const Scheme = "pkcs11"

func init() {
	keystore.Register(keystore.Backend{
		Scheme:         Scheme,
		Summary:        "a key on a PKCS#11 token (RFC 7512 URI)",
		SecretAttr:     "pin-source",
		SecretRequired: true,
		Troubleshoot: "Check the URI against 'twoway-hsm keys list' (token=, serial=, id=, object=), that module-path= names the token vendor's PKCS#11 library, " +
			"that the PIN source is readable by the plugin, and for SoftHSM2 that the plugin's environment has SOFTHSM2_CONF.",
		Store:       Store{},
		Hint:        Hint,
		AuthFailure: IsAuthFailure,
	})
}

// ErrLabelExists is returned (with keystore.ErrExists) when a key is to
// be made with the label (object=) of a key the token already has: two
// keys with one label make object= references ambiguous.
var ErrLabelExists = errors.New("pkcs11store: a key with this label already exists")

// Store is the store of keys on PKCS#11 tokens. Its zero value is ready;
// it is safe for concurrent use.
type Store struct {
	// Options are added to what the store gives every token it opens
	// (WithPoolSize, WithStrict, WithMaxRetries, ...). Leave out the PIN
	// options: the PIN comes from the URI or keystore.Options.Secret.
	Options []pkcs11.Option
}

var _ keystore.Store = Store{}

// kinds maps the errors of hsm/pkcs11 onto the keystore sentinels, first
// match first.
var kinds = []keystore.ErrorKind{
	{Backend: pkcs11.ErrInvalidURI, Store: keystore.ErrInvalidRef},
	{Backend: pkcs11.ErrPINIncorrect, Store: keystore.ErrAuth},
	{Backend: pkcs11.ErrPINLocked, Store: keystore.ErrAuth},
	{Backend: pkcs11.ErrPINSource, Store: keystore.ErrSecretRequired},
	{Backend: pkcs11.ErrKeyNotFound, Store: keystore.ErrNotFound},
	{Backend: pkcs11.ErrTokenNotFound, Store: keystore.ErrNotFound},
	{Backend: pkcs11.ErrKeyExists, Store: keystore.ErrExists},
	{Backend: ErrLabelExists, Store: keystore.ErrExists},
	{Backend: pkcs11.ErrUnsupportedKeyType, Store: keystore.ErrUnsupported},
	{Backend: pkcs11.ErrKeyNotDerivable, Store: keystore.ErrUnsupported},
	{Backend: pkcs11.ErrKeyExtractable, Store: keystore.ErrUnsupported},
	{Backend: pkcs11.ErrModuleNotFound, Store: keystore.ErrUnavailable},
	{Backend: pkcs11.ErrModuleLoad, Store: keystore.ErrUnavailable},
	{Backend: pkcs11.ErrTokenUnavailable, Store: keystore.ErrUnavailable},
}

// wrap adds the keystore sentinel that fits an error of hsm/pkcs11.
func wrap(err error) error { return keystore.Classify(err, kinds) }

func invalid(format string, a ...any) error {
	return &keystore.KindError{Kind: keystore.ErrInvalidRef, Err: fmt.Errorf("%w: %s", pkcs11.ErrInvalidURI, fmt.Sprintf(format, a...))}
}

// parse refuses a pin-value and parses the URI.
func parse(ref string) (*pkcs11.URI, error) {
	if err := keystore.RefuseInlineSecret(ref); err != nil {
		return nil, err
	}
	u, err := pkcs11.ParseURI(ref)
	if err != nil {
		return nil, wrap(err)
	}
	if u.PINSource != "" {
		// Canonical (and so checked) before any device is touched.
		src, err := secret.Canonical(u.PINSource)
		if err != nil {
			return nil, wrap(fmt.Errorf("%w: pin-source: %w", pkcs11.ErrPINSource, err))
		}
		u.PINSource = src
	}
	return u, nil
}

// parseKey parses a URI that must name one key; what says what to do
// otherwise.
func parseKey(ref, what string) (*pkcs11.URI, error) {
	u, err := parse(ref)
	if err != nil {
		return nil, err
	}
	if u.Key.IsZero() {
		return nil, invalid("%s names no key: %s", pkcs11.RedactURI(ref), what)
	}
	return u, nil
}

// options are the token options for a reference: the store's, the
// logger, and the Secret callback as the PIN of last resort.
func (st Store) options(ref string, o *keystore.Options) []pkcs11.Option {
	opts := append(slices.Clone(st.Options), pkcs11.WithLogger(o.Log()))
	if f := o.SecretFunc(); f != nil {
		what := "PIN for " + pkcs11.RedactURI(ref)
		opts = append(opts, pkcs11.WithPINFunc(func(pkcs11.TokenInfo) ([]byte, error) { return f(what) }))
	}
	return opts
}

// session is an open token and the URI it was opened with.
type session struct {
	uri *pkcs11.URI
	tok *pkcs11.Token
}

// open opens and logs in to the token the URI names.
func (st Store) open(ctx context.Context, ref string, u *pkcs11.URI, o *keystore.Options) (*session, error) {
	tok, err := pkcs11.OpenToken(ctx, ref, st.options(ref, o)...)
	if err != nil {
		return nil, wrap(err)
	}
	return &session{uri: u, tok: tok}, nil
}

// keys lists the private keys on the token that the URI's id= and
// object= select (all of them without), sorted by id and label.
func (s *session) keys(ctx context.Context) ([]pkcs11.KeyInfo, error) {
	all, err := s.tok.ListKeys(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	var out []pkcs11.KeyInfo
	for _, k := range all {
		if matches(k, s.uri.Key) {
			out = append(out, k)
		}
	}
	slices.SortStableFunc(out, func(a, b pkcs11.KeyInfo) int {
		if c := bytes.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Label, b.Label)
	})
	return out, nil
}

// matches reports whether a key has the id and label ref names (each
// when given).
func matches(k pkcs11.KeyInfo, ref pkcs11.KeyRef) bool {
	return (len(ref.ID) == 0 || bytes.Equal(k.ID, ref.ID)) && (ref.Label == "" || k.Label == ref.Label)
}

// find returns the one private key the URI names, usable or not.
func (s *session) find(ctx context.Context) (pkcs11.KeyInfo, error) {
	found, err := s.keys(ctx)
	if err != nil {
		return pkcs11.KeyInfo{}, err
	}
	label := s.tok.Info().Label
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return pkcs11.KeyInfo{}, wrap(fmt.Errorf("%w: no private key with %s on token %q", pkcs11.ErrKeyNotFound, s.uri.Key, label))
	}
	var ids []string
	for _, k := range found {
		ids = append(ids, "id "+hexOrNone(k.ID))
	}
	return pkcs11.KeyInfo{}, fmt.Errorf("%w: %s on token %q matches %d keys: %s; name one by its id=",
		pkcs11.ErrKeyAmbiguous, s.uri.Key, label, len(found), strings.Join(ids, ", "))
}

func hexOrNone(b []byte) string {
	if len(b) == 0 {
		return "(none)"
	}
	return hex.EncodeToString(b)
}

// Ref returns the canonical reference of a key: the token by label and
// serial, the key by id and label, then the module-path and pin-source of
// the reference it was found with (module-path as given, pin-source in
// canonical form). It never holds a pin-value.
func Ref(tok pkcs11.TokenInfo, key pkcs11.KeyRef, given *pkcs11.URI) string {
	u := &pkcs11.URI{
		Token: pkcs11.TokenSelector{Label: tok.Label, Serial: tok.Serial},
		Key:   key,
	}
	if given != nil {
		u.ModulePath = given.ModulePath
		u.PINSource = given.PINSource
		if src, err := secret.Canonical(given.PINSource); err == nil {
			u.PINSource = src
		}
	}
	return u.String()
}

// Details are a PKCS#11 key's details for scripts (JSON).
type Details struct {
	Token      string     `json:"token"`
	Serial     string     `json:"serial"`
	ModulePath string     `json:"module_path"`
	ID         string     `json:"id"` // CKA_ID, hex
	Label      string     `json:"label"`
	KeyType    string     `json:"key_type"`
	Curve      string     `json:"curve,omitempty"`
	Attributes Attributes `json:"attributes"`
}

// Attributes are the key's security-relevant attributes.
type Attributes struct {
	Sensitive        bool `json:"sensitive"`
	Extractable      bool `json:"extractable"`
	Derive           bool `json:"derive"`
	Token            bool `json:"token"`
	Private          bool `json:"private"`
	AlwaysSensitive  bool `json:"always_sensitive"`
	NeverExtractable bool `json:"never_extractable"`
	Local            bool `json:"local"`
}

// TokenDetails describe a listed token for scripts (JSON).
type TokenDetails struct {
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	ModulePath   string `json:"module_path"`
}

// Name is how a key is told apart in a listing: "id 01 (gw)", "id 01",
// "object gw".
func Name(id []byte, label string) string {
	switch {
	case len(id) > 0 && label != "":
		return fmt.Sprintf("id %x (%s)", id, label)
	case len(id) > 0:
		return fmt.Sprintf("id %x", id)
	case label != "":
		return "object " + label
	}
	return "(no id, no label)"
}

// info describes a key found with the session's URI.
func (s *session) info(k pkcs11.KeyInfo) *keystore.KeyInfo {
	ti := s.tok.Info()
	a := k.Attributes
	i := &keystore.KeyInfo{
		Ref:       Ref(ti, pkcs11.KeyRef{ID: k.ID, Label: k.Label}, s.uri),
		Backend:   Scheme,
		KEM:       k.KEM,
		PublicKey: bytes.Clone(k.PublicKey),
		Usable:    k.Unusable == nil,
		Name:      Name(k.ID, k.Label),
	}
	if k.Unusable != nil {
		i.Problem = k.Unusable.Error()
	}
	for _, x := range []struct {
		on   bool
		name string
	}{{a.Sensitive, "sensitive"}, {a.Extractable, "extractable"}, {a.Derive, "derive"}, {a.Token, "token"}, {a.Private, "private"}, {a.Local, "local"}} {
		if x.on {
			i.Attributes = append(i.Attributes, x.name)
		}
	}
	keyType := k.KeyType
	if k.Curve != "" {
		keyType += " (" + k.Curve + ")"
	}
	orNone := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	i.Fields = []keystore.Field{
		{Name: "token", Value: fmt.Sprintf("%s (serial %s)", ti.Label, ti.Serial)},
		{Name: "module", Value: ti.ModulePath},
		{Name: "id", Value: orNone(hex.EncodeToString(k.ID))},
		{Name: "label", Value: orNone(k.Label)},
		{Name: "key type", Value: keyType},
		{Name: "attributes", Value: fmt.Sprintf("sensitive=%t extractable=%t derive=%t token=%t private=%t", a.Sensitive, a.Extractable, a.Derive, a.Token, a.Private)},
		{Name: "", Value: fmt.Sprintf("always-sensitive=%t never-extractable=%t local=%t", a.AlwaysSensitive, a.NeverExtractable, a.Local)},
	}
	i.Details = &Details{
		Token: ti.Label, Serial: ti.Serial, ModulePath: ti.ModulePath,
		ID: hex.EncodeToString(k.ID), Label: k.Label, KeyType: k.KeyType, Curve: k.Curve,
		Attributes: Attributes{
			Sensitive: a.Sensitive, Extractable: a.Extractable, Derive: a.Derive, Token: a.Token,
			Private: a.Private, AlwaysSensitive: a.AlwaysSensitive, NeverExtractable: a.NeverExtractable, Local: a.Local,
		},
	}
	return i
}

// Create implements keystore.Store: a key pair generated on the token,
// sensitive, not extractable, derive-only. The URI must name it with id=
// and/or object=; a key with that id or label on the token is an error
// wrapping keystore.ErrExists.
func (st Store) Create(ctx context.Context, ref string, id kem.ID, o *keystore.Options) (*keystore.KeyInfo, error) {
	return st.make(ctx, ref, id, nil, o)
}

// Import implements keystore.Store: the private key stored on the token
// as a sensitive, non-extractable, derive-only key (P-256, P-384, P-521,
// X25519, X448, as the token allows).
func (st Store) Import(ctx context.Context, ref string, m *keystore.Material, o *keystore.Options) (*keystore.KeyInfo, error) {
	if m == nil {
		return nil, errors.New("pkcs11store: no key material to import")
	}
	return st.make(ctx, ref, m.KEM, m, o)
}

// make generates (m == nil) or imports a key.
func (st Store) make(ctx context.Context, ref string, id kem.ID, m *keystore.Material, o *keystore.Options) (*keystore.KeyInfo, error) {
	u, err := parse(ref)
	if err != nil {
		return nil, err
	}
	if u.Key.IsZero() {
		return nil, invalid("the URI must name the new key: add id=%%01 (CKA_ID) and/or object=LABEL (CKA_LABEL), e.g. pkcs11:token=dev;id=%%01;object=gw")
	}
	if !id.IsDH() {
		return nil, &keystore.KindError{Kind: keystore.ErrUnsupported, Err: fmt.Errorf("%w: a PKCS#11 key can be P-256, P-384, P-521, X25519 or X448 (as the token allows), not %v; ML-KEM and X-Wing keys exist here only as soft keys",
			pkcs11.ErrUnsupportedKeyType, id)}
	}
	s, err := st.open(ctx, ref, u, o)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	all, err := s.tok.ListKeys(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	label := s.tok.Info().Label
	for _, k := range all {
		if len(u.Key.ID) > 0 && bytes.Equal(k.ID, u.Key.ID) {
			return nil, wrap(fmt.Errorf("%w: %s on token %q (the existing key: %s, labelled %q)", pkcs11.ErrKeyExists, pkcs11.KeyRef{ID: k.ID}, label, kemOrType(k), k.Label))
		}
		if u.Key.Label != "" && k.Label == u.Key.Label {
			return nil, wrap(fmt.Errorf("%w: object=%s on token %q (id %s); two keys with one label make object= references ambiguous", ErrLabelExists, u.Key.Label, label, hexOrNone(k.ID)))
		}
	}
	var key *pkcs11.Key
	switch {
	case m == nil:
		key, err = s.tok.GenerateKey(ctx, id, u.Key)
	case id == kem.DHKEMX448HKDFSHA512:
		key, err = s.tok.ImportX448Key(ctx, m.Secret, u.Key)
	default:
		priv, perr := id.Curve().NewPrivateKey(m.Secret)
		if perr != nil {
			return nil, fmt.Errorf("pkcs11store: the %v private key is invalid: %w", id, perr)
		}
		key, err = s.tok.ImportKey(ctx, priv, u.Key)
	}
	if err != nil {
		return nil, wrap(err)
	}
	return s.info(key.Info()), nil
}

func kemOrType(k pkcs11.KeyInfo) string {
	if k.KEM != 0 {
		return k.KEM.String()
	}
	return k.KeyType
}

// List implements keystore.Store: the private keys on the token, usable
// or not, filtered by the URI's id= and object= when it has them.
func (st Store) List(ctx context.Context, ref string, o *keystore.Options) (*keystore.Listing, error) {
	u, err := parse(ref)
	if err != nil {
		return nil, err
	}
	s, err := st.open(ctx, ref, u, o)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	keys, err := s.keys(ctx)
	if err != nil {
		return nil, err
	}
	ti := s.tok.Info()
	l := &keystore.Listing{
		Backend: Scheme,
		Title:   fmt.Sprintf("token %q (serial %s, %s %s) via %s", ti.Label, ti.Serial, ti.Manufacturer, ti.Model, ti.ModulePath),
		Details: &TokenDetails{Label: ti.Label, Serial: ti.Serial, Manufacturer: ti.Manufacturer, Model: ti.Model, ModulePath: ti.ModulePath},
		Keys:    []*keystore.KeyInfo{},
	}
	for _, k := range keys {
		l.Keys = append(l.Keys, s.info(k))
	}
	return l, nil
}

// Show implements keystore.Store: the one private key the URI names,
// usable or not. More than one match is an error listing their ids.
func (st Store) Show(ctx context.Context, ref string, o *keystore.Options) (*keystore.KeyInfo, error) {
	u, err := parseKey(ref, "add id= and/or object= (without them, list the token's keys)")
	if err != nil {
		return nil, err
	}
	s, err := st.open(ctx, ref, u, o)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	k, err := s.find(ctx)
	if err != nil {
		return nil, err
	}
	return s.info(k), nil
}

// Delete implements keystore.Store: the private key the URI names and
// the public key objects with its id, found again by the key's own id
// and label, so that exactly the key confirm saw goes.
func (st Store) Delete(ctx context.Context, ref string, confirm func(*keystore.KeyInfo) error, o *keystore.Options) (*keystore.Deletion, error) {
	u, err := parseKey(ref, "name the key to delete with id= and/or object=")
	if err != nil {
		return nil, err
	}
	s, err := st.open(ctx, ref, u, o)
	if err != nil {
		return nil, err
	}
	defer s.tok.Close()
	k, err := s.find(ctx)
	if err != nil {
		return nil, err
	}
	i := s.info(k)
	if err := confirm(i); err != nil {
		return nil, err
	}
	target := pkcs11.KeyRef{ID: k.ID, Label: k.Label}
	if target.IsZero() {
		target = u.Key
	}
	if err := s.tok.DeleteKey(ctx, target); err != nil {
		return nil, wrap(err)
	}
	return &keystore.Deletion{Deleted: []string{"pkcs11 key " + i.Ref}, Key: i}, nil
}

// Public implements keystore.Store with the least privilege that works:
// the token's public key object, read without logging in
// (pkcs11.ReadPublicKey); only if the token keeps none (or the URI
// matches several), the key found after logging in, which may need the
// PIN.
func (st Store) Public(ctx context.Context, ref string, o *keystore.Options) (kem.ID, []byte, error) {
	u, err := parseKey(ref, "add id= and/or object=")
	if err != nil {
		return 0, nil, err
	}
	id, pub, err := pkcs11.ReadPublicKey(ctx, ref, st.Options...)
	if err == nil {
		return id, pub, nil
	}
	if !errors.Is(err, pkcs11.ErrPublicKeyNotFound) && !errors.Is(err, pkcs11.ErrKeyAmbiguous) {
		return 0, nil, wrap(err) // no such module or token: no PIN would help
	}
	s, err := st.open(ctx, ref, u, o)
	if err != nil {
		return 0, nil, err
	}
	defer s.tok.Close()
	k, err := s.tok.FindKey(ctx, u.Key)
	if err != nil {
		return 0, nil, wrap(err)
	}
	return k.KEM(), k.PublicKeyBytes(), nil
}

// Open implements keystore.Store: the key, which stays on the token. The
// returned key is a *pkcs11.Key: besides keystore.Key it implements
// kem.Exchanger and, but for X448, crypto/ecdh.KeyExchanger. Closing it
// closes its token session pool.
func (st Store) Open(ctx context.Context, ref string, o *keystore.Options) (keystore.Key, error) {
	if _, err := parseKey(ref, "name the key with id= and/or object="); err != nil {
		return nil, err
	}
	k, err := pkcs11.OpenKey(ctx, ref, st.options(ref, o)...)
	if err != nil {
		return nil, wrap(err)
	}
	return k, nil
}

// IsAuthFailure reports whether err means that the token refused the PIN
// or locked it, which retrying does not cure and may make worse.
func IsAuthFailure(err error) bool {
	return errors.Is(err, pkcs11.ErrPINIncorrect) || errors.Is(err, pkcs11.ErrPINLocked)
}

// Hint says what to do about an error of the store (or of package
// hsm/pkcs11), or "".
func Hint(err error) string {
	switch {
	case errors.Is(err, pkcs11.ErrModuleNotFound):
		return "add module-path=/path/to/module.so to the URI's query: it names the token vendor's PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so); without it p11-kit's proxy module is used, if installed (apt-get install p11-kit-modules)"
	case errors.Is(err, pkcs11.ErrModuleLoad):
		return "module-path must name the token vendor's PKCS#11 library (a shared object exporting C_GetFunctionList) built for this machine"
	case errors.Is(err, pkcs11.ErrTokenNotFound):
		return "check token= and serial= in the URI against the tokens listed; SoftHSM2 finds its tokens through the configuration named by SOFTHSM2_CONF (twoway-hsm env up prints the line to export)"
	case errors.Is(err, pkcs11.ErrTokenAmbiguous):
		return "add token=LABEL or serial=SERIAL to the URI"
	case errors.Is(err, pkcs11.ErrInvalidURI) && strings.Contains(err.Error(), "unknown"):
		return "RFC 7512 defines token, serial, manufacturer, model, id, object, type, slot-id, ... (path) and module-path, pin-source (query); vendor attributes start with x-"
	case errors.Is(err, pkcs11.ErrPINSource):
		return "give the user PIN with --pin-file FILE, --pin-env NAME, or pin-source=file:PATH (or pin-source=env:NAME) in the URI's query; on a terminal the command asks for it"
	case errors.Is(err, pkcs11.ErrPINIncorrect):
		return "the token rejected the PIN: check the PIN file or variable; every wrong PIN counts towards locking the token's user PIN"
	case errors.Is(err, pkcs11.ErrPINLocked):
		return "the user PIN is locked or expired: the token's security officer has to reset it"
	case errors.Is(err, pkcs11.ErrKeyExists), errors.Is(err, ErrLabelExists):
		return "choose another id= (and object=), or delete the existing key first with 'twoway-hsm keys delete'"
	case errors.Is(err, pkcs11.ErrKeyNotFound):
		return "'twoway-hsm keys list' with the token's URI (without id= and object=) lists the keys on it"
	case errors.Is(err, pkcs11.ErrKeyAmbiguous):
		return "name the key by its id= (CKA_ID), which twoway-hsm keeps unique"
	case errors.Is(err, pkcs11.ErrTokenUnavailable):
		return "the token could not be reached again: check that it is connected, then retry"
	case errors.Is(err, pkcs11.ErrUnsupportedKeyType):
		return "this token cannot make or use such keys; try another KEM (--kem p256 works on most tokens)"
	case errors.Is(err, pkcs11.ErrKeyNotDerivable):
		return "the key lacks CKA_DERIVE=true and cannot do ECDH; make a new one with 'twoway-hsm keys create'"
	}
	return ""
}

// Check implements keystore.Store: the URI parses, names one key, and
// carries no pin-value.
func (st Store) Check(ref string) error {
	_, err := parseKey(ref, "name the key with id= (CKA_ID) and/or object= (CKA_LABEL)")
	return err
}
