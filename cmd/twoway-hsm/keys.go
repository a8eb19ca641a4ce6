package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
)

const keysUsage = `Usage: twoway-hsm keys <subcommand> REF [flags]

Manages HPKE receiver keys on a PKCS#11 token, in a TPM 2.0, or in a file.

Subcommands:
  create REF --kem KEM           generate a key (on the token, in the TPM, in a file)
  import REF --from FILE         store an existing private key as a non-extractable key
  list   REF                     list the keys on a token, in a TPM or in a directory
  show   REF                     show one key: KEM, public key, reference, attributes
  delete REF [--yes]             delete a key
  attest REF --out FILE          evidence that a TPM key lives in its TPM

References (the scheme picks the backend):
  pkcs11:token=dev;id=%01;object=gw?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/twoway/dev.pin
      a key on a PKCS#11 token (RFC 7512 URI): the token by token= and/or
      serial=, the key by id= (CKA_ID) and/or object= (CKA_LABEL);
      module-path names the vendor's PKCS#11 library (default: p11-kit's proxy)
  tpm2:file=/etc/twoway/gw.pem?tpm=/dev/tpmrm0
      a key in a TPM 2.0: file= is the key file (TSS2 PEM), handle=0x81000010
      a persistent handle; tpm= is /dev/tpmrm0 (default), tcp:HOST:PORT or
      unix:PATH (swtpm); auth-source=PATH|env:NAME the key's auth value
  soft:file=/etc/twoway/dev-key.pem
      a private key in a file: development only

PINs (and TPM auth values) come from --pin-file FILE, --pin-env NAME,
pin-source=file:PATH or pin-source=env:NAME in the URI (auth-source= for
TPM keys), or, for a PKCS#11 PIN, a prompt on a terminal; never from the
command line unless --insecure-pin is given.

Examples:
  twoway-hsm keys create 'pkcs11:token=dev;id=%01;object=gw' --kem p256 --pin-file dev.pin
  twoway-hsm keys create 'tpm2:file=/etc/twoway/gw.pem' --kem p256
  twoway-hsm keys list 'pkcs11:token=dev?pin-source=file:/etc/twoway/dev.pin' --json

Run 'twoway-hsm keys <subcommand> -h' for the flags and examples of each.
`

const keysCreateUsage = `Usage: twoway-hsm keys create REF --kem KEM [flags]

Generates a key for an HPKE KEM and prints its reference (the one to give
a plugin or a server), its KEM and its public key.

  pkcs11:  generated on the token as a sensitive, non-extractable,
           derive-only key pair; the URI must name it with id= and/or
           object=; an existing key with that id or label is an error.
           KEMs: p256, p384, p521, x25519, x448, as the token allows.
  tpm2:    created in the TPM (fixedTPM); file= is where the key file is
           written (mode 0600, never over an existing file); handle= also
           makes it persistent there. KEMs: p256, p384, p521, as the TPM
           implements them. --pin-file/--pin-env set the key's auth value.
  soft:    a private key file (mode 0600, never over an existing file).
           Development only. KEMs: all of the above, and mlkem768,
           mlkem1024, xwing.

KEM names are case-insensitive; HPKE names ("DHKEM(P-256, HKDF-SHA256)")
and ids (0x0010) work too.

Examples:
  twoway-hsm keys create 'pkcs11:token=dev;id=%01;object=gw?pin-source=file:/etc/twoway/dev.pin' --kem p256
  twoway-hsm keys create 'tpm2:file=/etc/twoway/gw.pem;handle=0x81000010?tpm=/dev/tpmrm0' --kem p256
  twoway-hsm keys create soft:file=dev-key.pem --kem x25519 --json
`

const keysImportUsage = `Usage: twoway-hsm keys import REF --from FILE [--kem KEM] [flags]

Stores an existing private key as a sensitive, non-extractable,
derive-only key on a PKCS#11 token, wraps it into a TPM (P-256, P-384,
P-521), or writes it as a soft key file, and prints the same as create.
Use it to migrate a software key into hardware; then destroy the file.

FILE holds one of:
  - a PKCS#8 key ("BEGIN PRIVATE KEY": P-256, P-384, P-521, X25519, X448),
  - a SEC 1 key ("BEGIN EC PRIVATE KEY"),
  - a twoway-hsm soft key file ("BEGIN HPKE PRIVATE KEY", any KEM),
  - the raw private key: exactly the scalar bytes (the 64-byte seed for
    ML-KEM, 32 for X-Wing); then --kem is required.
The key bytes read are zeroed after use; the file is left alone.

Examples:
  twoway-hsm keys import 'pkcs11:token=dev;id=%02;object=migrated?pin-source=file:/etc/twoway/dev.pin' --from old-key.pem
  twoway-hsm keys import 'tpm2:file=/etc/twoway/gw.pem' --from gw-p256.raw --kem p256
`

const keysListUsage = `Usage: twoway-hsm keys list REF [flags]

Lists keys, usable or not:
  pkcs11:token=LABEL?...   every private key on the token (KEM, id, label,
                           whether a plugin can use it and why not,
                           attributes); id=/object= in the URI filter
  tpm2:?tpm=TRANSPORT      the TPM's persistent handles, whether each holds
                           an ECDH key, its KEM and public key
  tpm2:dir=DIR?tpm=...     the TPM key files in DIR
  soft:dir=DIR             the soft key files in DIR (development only)

Examples:
  twoway-hsm keys list 'pkcs11:token=dev?pin-source=file:/etc/twoway/dev.pin'
  twoway-hsm keys list 'tpm2:?tpm=tcp:127.0.0.1:2321' --json
  twoway-hsm keys list soft:dir=/etc/twoway
`

const keysShowUsage = `Usage: twoway-hsm keys show REF [flags]

Shows one key: its reference, KEM, public key, whether a plugin can use
it, and the backend's details (pkcs11: token, CKA_ID, label, key type and
the attributes sensitive/extractable/derive/token/private; tpm2: transport,
key file, persistent handle; soft: the file).

Examples:
  twoway-hsm keys show 'pkcs11:token=dev;id=%01?pin-source=file:/etc/twoway/dev.pin'
  twoway-hsm keys show 'tpm2:handle=0x81000010' --json
  twoway-hsm keys show soft:file=dev-key.pem
`

const keysDeleteUsage = `Usage: twoway-hsm keys delete REF [--yes] [flags]

Deletes a key for good:
  pkcs11:  the private key the URI names (id=/object=) and its public key
           objects; more than one match is an error
  tpm2:    handle= is evicted from the TPM, file= is removed (a file that
           is not a TPM key file is left alone); give both to do both
  soft:    the key file is removed

Without --yes the command shows the key and asks for confirmation when
stdin is a terminal, and refuses when it is not.

Examples:
  twoway-hsm keys delete 'pkcs11:token=dev;id=%01?pin-source=file:/etc/twoway/dev.pin'
  twoway-hsm keys delete 'tpm2:file=/etc/twoway/gw.pem;handle=0x81000010' --yes
`

// keysSubcommands is the command table of "twoway-hsm keys".
var keysSubcommands = []command{
	{name: "create", summary: "generate a key", run: runKeysCreate},
	{name: "import", summary: "store an existing private key", run: runKeysImport},
	{name: "list", summary: "list keys", run: runKeysList},
	{name: "show", summary: "show one key", run: runKeysShow},
	{name: "delete", summary: "delete a key", run: runKeysDelete},
	{name: "attest", summary: "write the evidence that a TPM key is in a TPM", run: runKeysAttest},
}

func runKeys(ctx context.Context, env *environment, args []string) int {
	return runSubcommand(ctx, env, "keys", keysUsage, keysSubcommands, args)
}

// keyCmd is a keys subcommand after its arguments are parsed: the
// reference resolved for the key store, and the store.
type keyCmd struct {
	*secretCmd
	res   *resolved
	store keystore.Store
	opts  *keystore.Options
}

// prepare parses the arguments of a keys subcommand that takes one REF.
func (c *secretCmd) prepare(args []string) (*keyCmd, int, bool) {
	ref, b, code, ok := c.oneRef(args)
	if !ok {
		return nil, code, false
	}
	r, err := c.resolve(ref, b)
	if err != nil {
		return nil, c.fail(err), false
	}
	return &keyCmd{secretCmd: c, res: r, store: b.Store, opts: c.options(r)}, 0, true
}

func runKeysCreate(ctx context.Context, env *environment, args []string) int {
	return runKeysMake(ctx, env, args, false)
}

func runKeysImport(ctx context.Context, env *environment, args []string) int {
	return runKeysMake(ctx, env, args, true)
}

// runKeysMake runs keys create, or keys import (from the private key in
// --from) when imp is set.
func runKeysMake(ctx context.Context, env *environment, args []string, imp bool) int {
	name, usage, kemHelp := "keys create", keysCreateUsage, "the KEM: "+namesOf(kemNames)
	if imp {
		name, usage, kemHelp = "keys import", keysImportUsage, "the KEM of a raw key file (or a check for a PEM file)"
	}
	sc := newSecretCmd(env, name, usage)
	sc.addJSON()
	from := ""
	if imp {
		sc.fs.StringVar(&from, "from", "", "the private key file to import")
	}
	kemName := sc.fs.String("kem", "", kemHelp)
	c, code, ok := sc.prepare(args)
	if !ok {
		return code
	}
	defer c.res.wipe()
	switch {
	case imp && from == "":
		return c.fail(usagef("missing --from FILE (the private key to import)"))
	case !imp && *kemName == "":
		return c.fail(usagef("missing --kem (e.g. --kem p256)"))
	}
	var id kem.ID
	var err error
	if *kemName != "" {
		if id, err = parseKEM(*kemName); err != nil {
			return c.fail(err)
		}
	}
	var info *keystore.KeyInfo
	if imp {
		m, merr := keystore.ReadMaterial(from, id)
		if merr != nil {
			return c.fail(fmt.Errorf("--from: %w", merr))
		}
		defer m.Wipe()
		info, err = c.store.Import(ctx, c.res.ref, m, c.opts)
	} else {
		info, err = c.store.Create(ctx, c.res.ref, id, c.opts)
	}
	if err != nil {
		return c.fail(err)
	}
	c.warnDevelopment(c.res.backend)
	v := viewOf(info)
	return c.output(v, func(w io.Writer) { printKey(w, v) })
}

func runKeysList(ctx context.Context, env *environment, args []string) int {
	sc := newSecretCmd(env, "keys list", keysListUsage)
	sc.addJSON()
	c, code, ok := sc.prepare(args)
	if !ok {
		return code
	}
	defer c.res.wipe()
	l, err := c.store.List(ctx, c.res.ref, c.opts)
	if err != nil {
		return c.fail(err)
	}
	c.warnDevelopment(c.res.backend)
	v := listViewOf(l)
	return c.output(v, func(w io.Writer) { printList(w, v) })
}

func runKeysShow(ctx context.Context, env *environment, args []string) int {
	sc := newSecretCmd(env, "keys show", keysShowUsage)
	sc.addJSON()
	c, code, ok := sc.prepare(args)
	if !ok {
		return code
	}
	defer c.res.wipe()
	info, err := c.store.Show(ctx, c.res.ref, c.opts)
	if err != nil {
		return c.fail(err)
	}
	c.warnDevelopment(c.res.backend)
	v := viewOf(info)
	return c.output(v, func(w io.Writer) { printKey(w, v) })
}

func runKeysDelete(ctx context.Context, env *environment, args []string) int {
	sc := newSecretCmd(env, "keys delete", keysDeleteUsage)
	sc.addJSON()
	yes := sc.fs.Bool("yes", false, "delete without asking")
	c, code, ok := sc.prepare(args)
	if !ok {
		return code
	}
	defer c.res.wipe()
	confirm := func(info *keystore.KeyInfo) error {
		if *yes {
			return nil
		}
		if !stdinIsTerminal(env) {
			return fmt.Errorf("not deleting %s without confirmation: stdin is not a terminal; pass --yes to delete it", info.Ref)
		}
		printKey(env.stderr, viewOf(info))
		fmt.Fprintf(env.stderr, "Delete this key? It cannot be undone. Type yes to delete: ")
		if ans := strings.ToLower(readLine(env)); ans != "yes" && ans != "y" {
			return errNotDeleted
		}
		return nil
	}
	d, err := c.store.Delete(ctx, c.res.ref, confirm, c.opts)
	if err != nil {
		return c.fail(err)
	}
	v := &deleteView{Deleted: d.Deleted, Key: viewOf(d.Key)}
	return c.output(v, func(w io.Writer) {
		for _, s := range v.Deleted {
			fmt.Fprintf(w, "deleted %s\n", s)
		}
	})
}

// errNotDeleted is the answer to a confirmation that was not yes.
var errNotDeleted = errors.New("not deleted")
