package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

const keyConfigUsage = `Usage: twoway-hsm key-config --key ID=REF [--key ID=REF ...] [--suite KDF/AEAD ...] [flags]

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

Formats: hex (default), base64, binary (the body itself: only to a file
given with --out or to a pipe, never to a terminal), json (each
configuration described, and the body in hex).

Examples:
  twoway-hsm key-config --key 1='pkcs11:token=dev;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so'
  twoway-hsm key-config --key 1=tpm2:file=/etc/twoway/gw.pem --key 2=soft:file=dev.pem --format binary --out ohttp-keys
  twoway-hsm key-config --key 7=tpm2:handle=0x81000010 --suite hkdf-sha256/aes-256-gcm --format json
`

// keyConfigView is the --format json output.
type keyConfigView struct {
	MediaType string            `json:"media_type"`
	Configs   []keyConfigDetail `json:"configs"`
	// Body is the application/ohttp-keys body, hex.
	Body string `json:"body_hex"`
}

type keyConfigDetail struct {
	KeyID     int           `json:"key_id"`
	Ref       string        `json:"ref"`
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
	var keys, suites stringList
	c.fs.Var(&keys, "key", "`ID=REF`: a key id (0-255) and the key's reference (repeatable)")
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
	if len(keys) == 0 {
		return c.fail(usagef("no --key given (e.g. --key 1=tpm2:file=/etc/twoway/gw.pem)"))
	}
	var ks []keyArg
	seen := map[byte]string{}
	for _, k := range keys {
		idStr, ref, ok := strings.Cut(k, "=")
		n, err := strconv.ParseUint(idStr, 0, 8)
		if !ok || err != nil || ref == "" {
			return c.fail(usagef("--key %q: want ID=REF with ID a key id from 0 to 255, e.g. --key 1=tpm2:file=/etc/twoway/gw.pem", safeRef(k)))
		}
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

	var configs []twoway.KeyConfig
	view := keyConfigView{MediaType: twoway.KeyConfigMediaType}
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
		configs = append(configs, kc)
		d := keyConfigDetail{KeyID: int(k.id), Ref: safeRef(k.ref), KEM: kemShort(id), KEMID: uint16(id), KEMName: id.String(),
			PublicKey: hex.EncodeToString(pub), Config: hex.EncodeToString(one)}
		for _, s := range kc.Suites {
			d.Suites = append(d.Suites, suiteDetail{KDF: kdfName(s.KDF), KDFID: uint16(s.KDF), AEAD: aeadName(s.AEAD), AEADID: uint16(s.AEAD)})
		}
		view.Configs = append(view.Configs, d)
	}
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
