package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

const keyConfigUsage = `Usage: twoway-hsm key-config --key ID=REF [--key ID=REF ...] [--merge SRC ...] [--suite KDF/AEAD ...] [flags]

Prints the OHTTP key configurations (RFC 9458 section 3) of one or more
keys as an application/ohttp-keys body, the document a gateway publishes
for its clients. Each --key gives the key id (0-255, unique) and the key's
reference; the KEM and public key come from the key itself. Only public
keys are read: a PKCS#11 public key object without logging in when the
token allows it (else after logging in), a TPM key without its auth value.

Symmetric suites (--suite, repeatable, for every key) are KDF/AEAD with
KDF hkdf-sha256, hkdf-sha384, hkdf-sha512 and AEAD aes-128-gcm,
aes-256-gcm, chacha20-poly1305 (or ids: 0x0001/0x0003). Default: the HKDF
of the KEM's hash with aes-128-gcm and chacha20-poly1305.

--merge SRC (repeatable) adds the configurations another gateway publishes,
so that one list carries every machine's key: SRC is a file holding an
application/ohttp-keys body (--format binary output), or the http or https
URL of a gateway, whose key configuration is fetched (GET with Accept:
application/ohttp-keys; a URL without a path means its
/.well-known/ohttp-gateway; --ca-cert and --client-cert/--client-key as for
request). The list is the --key configurations, then each source's in the
order given. A key id that appears twice with the same configuration is
listed once; with different configurations it is an error naming the id
and both sources: each machine's key needs a key id of its own, by which
the load balancer or relay routes requests to the machine that holds it.
--suite applies to --key keys only: merged configurations keep their own.

Formats: hex (default), base64, binary (the body itself: only to a file
given with --out or to a pipe, never to a terminal), json (each
configuration described, and the body in hex).

Examples:
  twoway-hsm key-config --key 1='pkcs11:token=dev;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so'
  twoway-hsm key-config --key 1=tpm2:file=/etc/twoway/gw.pem --key 2=soft:file=dev.pem --format binary --out ohttp-keys
  twoway-hsm key-config --key 7=tpm2:handle=0x81000010 --suite hkdf-sha256/aes-256-gcm --format json
  twoway-hsm key-config --merge https://gw1.internal:8443 --merge https://gw2.internal:8443 --ca-cert ca.pem --format binary --out ohttp-keys
  twoway-hsm key-config --key 3=tpm2:file=/etc/twoway/gw.pem --merge gw1.keys --merge gw2.keys --format binary --out ohttp-keys
`

// keyConfigView is the --format json output.
type keyConfigView struct {
	MediaType string            `json:"media_type"`
	Configs   []keyConfigDetail `json:"configs"`
	// Body is the application/ohttp-keys body, hex.
	Body string `json:"body_hex"`
}

type keyConfigDetail struct {
	KeyID int `json:"key_id"`
	// Ref is the reference of a --key key; Source is where a merged
	// configuration came from (the file or URL of --merge).
	Ref       string        `json:"ref,omitempty"`
	Source    string        `json:"source,omitempty"`
	KEM       string        `json:"kem"`
	KEMID     uint16        `json:"kem_id"`
	KEMName   string        `json:"kem_name"`
	PublicKey string        `json:"public_key"`
	Suites    []suiteDetail `json:"suites"`
	// Config is this configuration alone, RFC 9458 section 3.1, hex.
	Config string `json:"config_hex"`
}

type suiteDetail struct {
	KDF    string `json:"kdf"`
	KDFID  uint16 `json:"kdf_id"`
	AEAD   string `json:"aead"`
	AEADID uint16 `json:"aead_id"`
}

// keyArg is one --key ID=REF.
type keyArg struct {
	id  byte
	ref string
}

func runKeyConfig(ctx context.Context, env *environment, args []string) int {
	c := newSecretCmd(env, "key-config", keyConfigUsage)
	var keys, suites, merges stringList
	var tlsf tlsFlags
	c.fs.Var(&keys, "key", "`ID=REF`: a key id (0-255) and the key's reference (repeatable)")
	c.fs.Var(&merges, "merge", "add the configurations of `SRC`: an application/ohttp-keys file or a gateway's URL (repeatable)")
	tlsf.register(c.fs)
	c.fs.Var(&suites, "suite", "a symmetric suite `KDF/AEAD` offered with every key (repeatable)")
	format := c.fs.String("format", "hex", "output format: hex, base64, binary or json")
	out := c.fs.String("out", "", "write the output to this `FILE` instead of stdout")
	c.fs.BoolVar(&c.json, "json", false, "same as --format json")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.fail(usagef("unexpected argument %q: keys are given with --key ID=REF", safeRef(pos[0])))
	}
	if c.json {
		*format = "json"
	}
	switch *format {
	case "hex", "base64", "binary", "json":
	default:
		return c.fail(usagef("unknown --format %q: want hex, base64, binary or json", *format))
	}
	if len(keys) == 0 && len(merges) == 0 {
		return c.fail(usagef("no --key given and no --merge (e.g. --key 1=tpm2:file=/etc/twoway/gw.pem, or --merge https://gw1.example)"))
	}
	if err := tlsf.check(); err != nil {
		return c.fail(err)
	}
	var srcs []mergeSource
	for _, m := range merges {
		src, err := parseMergeSource(m)
		if err != nil {
			return c.fail(err)
		}
		srcs = append(srcs, src)
	}
	var ks []keyArg
	seen := map[byte]string{}
	for _, k := range keys {
		e, err := parseKeyFlag(k)
		if err != nil {
			return c.fail(err)
		}
		n, ref := e.ID, e.Ref
		if prev, dup := seen[byte(n)]; dup {
			return c.fail(usagef("key id %d is given twice (%s and %s): key ids must be unique", n, safeRef(prev), safeRef(ref)))
		}
		if _, err := keystore.Lookup(ref); err != nil {
			return c.fail(err)
		}
		seen[byte(n)] = ref
		ks = append(ks, keyArg{id: byte(n), ref: ref})
	}
	var ss []twoway.SymmetricSuite
	for _, s := range suites {
		suite, err := parseSuite(s)
		if err != nil {
			return c.fail(err)
		}
		ss = append(ss, suite)
	}
	if *format == "binary" && *out == "" && isTerminal(env.stdout) {
		return c.fail(usagef("--format binary writes bytes that garble a terminal: add --out FILE or redirect stdout"))
	}

	list := &mergedList{}
	for _, k := range ks {
		id, pub, err := c.publicKeyOf(ctx, k.ref)
		if err != nil {
			return c.fail(fmt.Errorf("key %d (%s): %w", k.id, safeRef(k.ref), err))
		}
		kc := twoway.KeyConfig{KeyID: k.id, KEM: hpke.KEM(id), PublicKey: pub, Suites: ss}
		if len(kc.Suites) == 0 {
			kc.Suites = defaultSuites(id)
		}
		one, err := kc.MarshalBinary()
		if err != nil {
			return c.fail(fmt.Errorf("key %d (%s): %w", k.id, safeRef(k.ref), err))
		}
		if _, err := list.add(kc, one, "--key "+strconv.Itoa(int(k.id))+"="+safeRef(k.ref), keyConfigDetail{Ref: safeRef(k.ref)}); err != nil {
			return c.fail(err)
		}
	}
	if len(srcs) > 0 {
		hc, err := tlsf.httpClient()
		if err != nil {
			return c.fail(err)
		}
		defer hc.CloseIdleConnections()
		for _, src := range srcs {
			cfgs, err := src.read(ctx, hc)
			if err != nil {
				return c.fail(err)
			}
			for _, kc := range cfgs {
				one, err := kc.MarshalBinary()
				if err != nil {
					return c.fail(fmt.Errorf("--merge %s: %w", src, err))
				}
				dup, err := list.add(kc, one, src.String(), keyConfigDetail{Source: src.String()})
				if err != nil {
					return c.fail(err)
				}
				if dup != "" {
					fmt.Fprintf(env.stderr, "key id %d from %s is the one from %s: listed once\n", kc.KeyID, src, dup)
				}
			}
		}
	}
	configs, view := list.configs, list.view
	body, err := twoway.MarshalKeyConfigs(configs)
	if err != nil {
		return c.fail(err)
	}
	view.Body = hex.EncodeToString(body)

	var data []byte
	switch *format {
	case "hex":
		data = []byte(hex.EncodeToString(body) + "\n")
	case "base64":
		data = []byte(base64.StdEncoding.EncodeToString(body) + "\n")
	case "binary":
		data = body
	case "json":
		var sb strings.Builder
		if err := writeJSON(&sb, view); err != nil {
			return c.fail(err)
		}
		data = []byte(sb.String())
	}
	if *out != "" {
		if err := os.WriteFile(*out, data, 0o644); err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(env.stderr, "wrote %d key configuration(s) (%s, %d bytes) to %s\n", len(configs), *format, len(data), *out)
		return exitOK
	}
	if _, err := env.stdout.Write(data); err != nil {
		return c.fail(err)
	}
	return exitOK
}

// mergedList is the key configurations key-config prints: each key id
// once, with where it came from.
type mergedList struct {
	configs []twoway.KeyConfig
	encoded [][]byte
	sources []string
	view    keyConfigView
}

// errKeyIDConflict is a key id with two different configurations.
var errKeyIDConflict = errors.New("key ids must be unique")

// add appends a configuration (one is its encoding) from source, unless
// its key id is listed: then the same configuration is dropped (dup names
// the source that listed it first) and another one is an error.
func (l *mergedList) add(kc twoway.KeyConfig, one []byte, source string, d keyConfigDetail) (dup string, err error) {
	for i, c := range l.configs {
		if c.KeyID != kc.KeyID {
			continue
		}
		if bytes.Equal(l.encoded[i], one) {
			return l.sources[i], nil
		}
		return "", fmt.Errorf("key id %d has one configuration in %s and another in %s: %w; give each machine's key a key id of its own", kc.KeyID, l.sources[i], source, errKeyIDConflict)
	}
	l.configs = append(l.configs, kc)
	l.encoded = append(l.encoded, one)
	l.sources = append(l.sources, source)
	id := kem.ID(kc.KEM)
	d.KeyID, d.KEM, d.KEMID, d.KEMName = int(kc.KeyID), kemShort(id), uint16(id), id.String()
	d.PublicKey, d.Config = hex.EncodeToString(kc.PublicKey), hex.EncodeToString(one)
	for _, s := range kc.Suites {
		d.Suites = append(d.Suites, suiteDetail{KDF: kdfName(s.KDF), KDFID: uint16(s.KDF), AEAD: aeadName(s.AEAD), AEADID: uint16(s.AEAD)})
	}
	l.view.MediaType = twoway.KeyConfigMediaType
	l.view.Configs = append(l.view.Configs, d)
	return "", nil
}

// mergeSource is one --merge: a file or a gateway's URL.
type mergeSource struct {
	file string
	url  *url.URL
}

func (s mergeSource) String() string {
	if s.url != nil {
		return s.url.Redacted()
	}
	return s.file
}

// parseMergeSource reads a --merge value: an http or https URL, or a file.
func parseMergeSource(v string) (mergeSource, error) {
	switch {
	case v == "":
		return mergeSource{}, usagef("--merge with an empty source")
	case strings.HasPrefix(v, "http://"), strings.HasPrefix(v, "https://"):
		u, err := gatewayURL("--merge", v)
		if err != nil {
			return mergeSource{}, err
		}
		return mergeSource{url: u}, nil
	case strings.Contains(v, "://"):
		return mergeSource{}, usagef("--merge %q: want a file or an http or https URL", redactURL(v))
	}
	return mergeSource{file: v}, nil
}

// read returns the source's key configurations.
func (s mergeSource) read(ctx context.Context, hc *http.Client) ([]twoway.KeyConfig, error) {
	var b []byte
	var err error
	if s.url != nil {
		if b, err = fetchKeyConfigs(ctx, hc, s.url); err != nil {
			return nil, fmt.Errorf("--merge: %w", err)
		}
	} else if b, err = readKeyConfigFile(s.file); err != nil {
		return nil, fmt.Errorf("--merge: %w", err)
	}
	cfgs, err := twoway.ParseKeyConfigs(b)
	if err != nil {
		err = fmt.Errorf("--merge %s: %w", s, err)
		if s.url == nil {
			err = withHint(err, keyConfigFileHint(b))
		}
		return nil, err
	}
	return cfgs, nil
}

// publicKeyOf returns the KEM and public key of the key a reference names,
// with the least privilege that works (the key store's Public).
func (c *secretCmd) publicKeyOf(ctx context.Context, ref string) (kem.ID, []byte, error) {
	b, err := keystore.Lookup(ref)
	if err != nil {
		return 0, nil, err
	}
	r, err := c.resolve(ref, b)
	if err != nil {
		return 0, nil, err
	}
	defer r.wipe()
	c.warnDevelopment(b)
	return b.Store.Public(ctx, r.ref, c.options(r))
}
