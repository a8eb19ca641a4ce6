package pkcs11

import (
	"context"
	"fmt"
)

// OpenKey is the one-call entry point for a process that serves one key:
// it parses an RFC 7512 URI such as
//
//	pkcs11:token=gw;id=%01;object=k1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gw/pin
//
// opens the module and the token (see [OpenToken] for where the module
// path and PIN come from), logs in, and finds the key (see
// [Token.FindKey]). The Key owns what was opened: its Close closes the
// Token and releases the module. The URI must name the key (id=, object=
// or both).
func OpenKey(ctx context.Context, uri string, opts ...Option) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if u.Key.IsZero() {
		return nil, fmt.Errorf("%w: %s names no key (give id= or object=)", ErrInvalidURI, u)
	}
	t, err := openToken(ctx, u, buildOptions(opts))
	if err != nil {
		return nil, err
	}
	k, err := t.FindKey(ctx, u.Key)
	if err != nil {
		t.Close()
		return nil, err
	}
	k.owned = true
	return k, nil
}

// FindKeyURI is [Token.FindKey] for the key an RFC 7512 URI names (id=,
// object=). Token attributes in the URI (token, serial, manufacturer,
// model), if any, must describe this Token ([ErrTokenNotFound] otherwise);
// query attributes (module-path, PIN) are ignored.
func (t *Token) FindKeyURI(ctx context.Context, uri string) (*Key, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if !u.Token.matches(t.info.Label, t.info.Serial, t.info.Manufacturer, t.info.Model) {
		return nil, fmt.Errorf("%w: %s names another token than %q (serial %s)", ErrTokenNotFound, u, t.info.Label, t.info.Serial)
	}
	return t.FindKey(ctx, u.Key)
}
