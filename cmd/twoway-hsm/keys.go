package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
	"github.com/twoway-hsm/twoway-hsm/testenv/swtpm"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

const keysUsage = `Usage: twoway-hsm keys <subcommand> REF [flags]

Manages HPKE receiver keys on a PKCS#11 token, in a TPM 2.0, or in a file.

Subcommands:
  create REF --kem KEM           generate a key (on the token, in the TPM, in a file)
  import REF --from FILE         store an existing private key as a non-extractable key
  list   REF                     list the keys on a token, in a TPM or in a directory
  show   REF                     show one key: KEM, public key, reference, attributes
  delete REF [--yes]             delete a key

References (the scheme picks the backend):
  pkcs11:token=dev;id=%01;object=gw?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/twoway/dev.pin
      a key on a PKCS#11 token (RFC 7512 URI): the token by token= and/or
      serial=, the key by id= (CKA_ID) and/or object= (CKA_LABEL);
      module-path defaults to SoftHSM2
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

// keysSubcommands is the dispatch table of "twoway-hsm keys".
var keysSubcommands = subcommands{
	"create": runKeysCreate,
	"import": runKeysImport,
	"list":   runKeysList,
	"show":   runKeysShow,
	"delete": runKeysDelete,
}

func runKeys(ctx context.Context, env *environment, args []string) int {
	return runSubcommand(ctx, env, "keys", keysUsage, keysSubcommands, args)
}

// subcommands is the dispatch table of a command with subcommands.
type subcommands map[string]func(ctx context.Context, env *environment, args []string) int

// runSubcommand runs the subcommand of group that args[0] names; usage is
// the group's help.
func runSubcommand(ctx context.Context, env *environment, group, usage string, subs subcommands, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(env.stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(env.stdout, usage)
		return exitOK
	}
	run, ok := subs[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "twoway-hsm %s: unknown subcommand %q\n\n", group, args[0])
		fmt.Fprint(env.stderr, usage)
		return exitUsage
	}
	return run(ctx, env, args[1:])
}

// cmdline is one command's flags, parsing and error reporting, shared by
// every command but plugin (whose stdout belongs to the plugin protocol).
type cmdline struct {
	name  string // "keys create"
	usage string // the text before the flag list
	env   *environment
	fs    *flag.FlagSet
	json  bool
}

func newCmdline(env *environment, name, usage string) *cmdline {
	c := &cmdline{name: name, usage: usage, env: env}
	c.fs = flag.NewFlagSet(name, flag.ContinueOnError)
	c.fs.SetOutput(env.stderr)
	c.fs.Usage = func() {} // printed by parse, to stdout for -h
	return c
}

// addJSON registers --json.
func (c *cmdline) addJSON() {
	c.fs.BoolVar(&c.json, "json", false, "print the result as one JSON document")
}

// stringList collects a repeated flag. Values are checked after parsing,
// so that the flag package never echoes one (a reference may hold a
// pin-value) in an error.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// printUsage writes the usage text and the flags.
func (c *cmdline) printUsage(w io.Writer) {
	fmt.Fprint(w, c.usage)
	has := false
	c.fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		c.fs.SetOutput(w)
		c.fs.PrintDefaults()
		c.fs.SetOutput(c.env.stderr)
	}
}

// parse parses flags that may come before, between or after the
// positional arguments ("keys create REF --kem p256"); "--" ends the
// flags. It returns the positional arguments, or an exit status when the
// command should stop (after -h: 0; after a bad flag: 2).
func (c *cmdline) parse(args []string) ([]string, int, bool) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printUsage(c.env.stdout)
				return nil, exitOK, false
			}
			fmt.Fprintln(c.env.stderr)
			c.printUsage(c.env.stderr)
			return nil, exitUsage, false
		}
		rest := c.fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), 0, true
		}
		if len(rest) == 0 {
			return pos, 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// oneRef parses the arguments of a command that takes exactly one REF and
// returns it with its scheme.
func (c *cmdline) oneRef(args []string) (ref, scheme string, code int, ok bool) {
	pos, code, ok := c.parse(args)
	if !ok {
		return "", "", code, false
	}
	switch {
	case len(pos) == 0:
		return "", "", c.fail(usagef("missing key reference (REF)")), false
	case len(pos) > 1:
		return "", "", c.fail(usagef("unexpected argument %q after the reference", safeRef(pos[1]))), false
	case pos[0] == "":
		return "", "", c.fail(usagef("empty key reference")), false
	}
	scheme, err := schemeOf(pos[0])
	if err != nil {
		return "", "", c.fail(err), false
	}
	return pos[0], scheme, 0, true
}

// fail reports err and returns the exit status: 2 with the usage for a
// usage error, 1 otherwise. Failures get a hint at what to do next.
func (c *cmdline) fail(err error) int {
	fmt.Fprintf(c.env.stderr, "twoway-hsm %s: %v\n", c.name, err)
	if isUsage(err) {
		fmt.Fprintln(c.env.stderr)
		c.printUsage(c.env.stderr)
		return exitUsage
	}
	if h := hint(err); h != "" {
		fmt.Fprintf(c.env.stderr, "hint: %s\n", h)
	}
	return exitFailure
}

// output writes v as JSON with --json, or with text otherwise.
func (c *cmdline) output(v any, text func(w io.Writer)) int {
	if c.json {
		if err := writeJSON(c.env.stdout, v); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	text(c.env.stdout)
	return exitOK
}

// warnSoft prints the development-only warning for soft keys.
func (c *cmdline) warnSoft() {
	fmt.Fprintln(c.env.stderr, softWarning)
}

// hint says what to do about an error from a backend.
func hint(err error) string {
	switch {
	case errors.Is(err, pkcs11.ErrModuleNotFound):
		return "check module-path= in the URI's query: it names the token vendor's PKCS#11 library; without it SoftHSM2 is used (" + softhsm.InstallHint + ")"
	case errors.Is(err, pkcs11.ErrModuleLoad):
		return "module-path must name the token vendor's PKCS#11 library (a shared object exporting C_GetFunctionList) built for this machine"
	case errors.Is(err, pkcs11.ErrTokenNotFound):
		return "check token= and serial= in the URI against the tokens listed; SoftHSM2 finds its tokens through the configuration named by SOFTHSM2_CONF (twoway-hsm env up prints the line to export)"
	case errors.Is(err, pkcs11.ErrTokenAmbiguous):
		return "add token=LABEL or serial=SERIAL to the URI"
	case errors.Is(err, pkcs11.ErrPINSource):
		return "give the user PIN with --pin-file FILE, --pin-env NAME, or pin-source=file:PATH (or pin-source=env:NAME) in the URI's query; on a terminal the command asks for it"
	case errors.Is(err, pkcs11.ErrPINIncorrect):
		return "the token rejected the PIN: check the PIN file or variable; every wrong PIN counts towards locking the token's user PIN"
	case errors.Is(err, pkcs11.ErrPINLocked):
		return "the user PIN is locked or expired: the token's security officer has to reset it"
	case errors.Is(err, pkcs11.ErrKeyExists), errors.Is(err, errLabelExists):
		return "choose another id= (and object=), or delete the existing key first with 'twoway-hsm keys delete'"
	case errors.Is(err, pkcs11.ErrKeyNotFound):
		return "'twoway-hsm keys list' with the token's URI (without id= and object=) lists the keys on it"
	case errors.Is(err, pkcs11.ErrKeyAmbiguous):
		return "name the key by its id= (CKA_ID), which twoway-hsm keeps unique"
	case errors.Is(err, pkcs11.ErrTokenUnavailable):
		return "the token could not be reached again: check that it is connected, then retry"
	case errors.Is(err, pkcs11.ErrUnsupportedKeyType):
		return "this token cannot make or use such keys; try another KEM (--kem p256 works on most tokens)"
	case errors.Is(err, tpm2.ErrTPMUnavailable):
		return "for /dev/tpmrm0 check that the device exists and that you are in the tss group (sudo usermod -aG tss $USER, then log in again); for swtpm check that it runs and that tpm= names its data port or socket ('twoway-hsm env up' starts one)"
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
	case errors.Is(err, swtpm.ErrNotFound):
		return "install swtpm: " + swtpm.InstallHint
	case errors.Is(err, errSoftExists):
		return "key files are never overwritten: choose another file= or delete the old key with 'twoway-hsm keys delete'"
	}
	return ""
}

var (
	errLabelExists = errors.New("a key with this label already exists")
	errSoftExists  = errors.New("file already exists")
)

// secretCmd is a cmdline with the PIN and auth value flags.
type secretCmd struct {
	*cmdline
	secrets secretFlags
}

func newSecretCmd(env *environment, name, usage string) *secretCmd {
	c := &secretCmd{cmdline: newCmdline(env, name, usage)}
	c.secrets.register(c.fs)
	return c
}

// pinSourceForRef returns the pin-source (or auth-source) an output
// reference should carry when the input named none: --pin-file as an
// absolute path, --pin-env as env:NAME.
func (c *secretCmd) pinSourceForRef(filePrefix string) string {
	switch {
	case c.secrets.file != "":
		return filePrefix + absPath(c.secrets.file)
	case c.secrets.env != "":
		return "env:" + c.secrets.env
	}
	return ""
}

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

func runKeysCreate(ctx context.Context, env *environment, args []string) int {
	return runKeysMake(ctx, env, args, false)
}

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
	c := newSecretCmd(env, name, usage)
	c.addJSON()
	from := ""
	if imp {
		c.fs.StringVar(&from, "from", "", "the private key file to import")
	}
	kemName := c.fs.String("kem", "", kemHelp)
	ref, scheme, code, ok := c.oneRef(args)
	if !ok {
		return code
	}
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
	var m *keyMaterial // nil: generate the key
	if imp {
		// Check the reference before reading the key.
		switch scheme {
		case schemePKCS11:
			_, err = parsePKCS11(ref)
		case schemeTPM2:
			_, err = parseTPMRef(ref)
		case schemeSoft:
			_, err = parseSoftRef(ref)
		}
		if err != nil {
			return c.fail(err)
		}
		if m, err = readKeyMaterial(from, id); err != nil {
			return c.fail(err)
		}
		defer m.wipe()
		id = m.id
	}
	var v *keyView
	switch scheme {
	case schemePKCS11:
		v, err = c.pkcs11Create(ctx, ref, id, m)
	case schemeTPM2:
		v, err = c.tpm2Create(ctx, ref, id, m)
	case schemeSoft:
		v, err = c.softCreate(ref, id, m)
	}
	if err != nil {
		return c.fail(err)
	}
	return c.output(v, func(w io.Writer) { printKey(w, v) })
}

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

func runKeysList(ctx context.Context, env *environment, args []string) int {
	c := newSecretCmd(env, "keys list", keysListUsage)
	c.addJSON()
	ref, scheme, code, ok := c.oneRef(args)
	if !ok {
		return code
	}
	var l *listView
	var err error
	switch scheme {
	case schemePKCS11:
		l, err = c.pkcs11List(ctx, ref)
	case schemeTPM2:
		l, err = c.tpm2List(ctx, ref)
	case schemeSoft:
		l, err = c.softList(ref)
	}
	if err != nil {
		return c.fail(err)
	}
	return c.output(l, func(w io.Writer) { printList(w, l) })
}

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

func runKeysShow(ctx context.Context, env *environment, args []string) int {
	c := newSecretCmd(env, "keys show", keysShowUsage)
	c.addJSON()
	ref, scheme, code, ok := c.oneRef(args)
	if !ok {
		return code
	}
	var v *keyView
	var err error
	switch scheme {
	case schemePKCS11:
		v, err = c.pkcs11Show(ctx, ref)
	case schemeTPM2:
		v, err = c.tpm2Show(ctx, ref)
	case schemeSoft:
		v, err = c.softShow(ref)
	}
	if err != nil {
		return c.fail(err)
	}
	return c.output(v, func(w io.Writer) { printKey(w, v) })
}

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

func runKeysDelete(ctx context.Context, env *environment, args []string) int {
	c := newSecretCmd(env, "keys delete", keysDeleteUsage)
	c.addJSON()
	yes := c.fs.Bool("yes", false, "delete without asking")
	ref, scheme, code, ok := c.oneRef(args)
	if !ok {
		return code
	}
	confirm := func(v *keyView) error {
		if *yes {
			return nil
		}
		if !stdinIsTerminal(env) {
			return fmt.Errorf("not deleting %s without confirmation: stdin is not a terminal; pass --yes to delete it", v.Ref)
		}
		printKey(env.stderr, v)
		fmt.Fprintf(env.stderr, "Delete this key? It cannot be undone. Type yes to delete: ")
		if ans := strings.ToLower(readLine(env)); ans != "yes" && ans != "y" {
			return errors.New("not deleted")
		}
		return nil
	}
	var d *deleteView
	var err error
	switch scheme {
	case schemePKCS11:
		d, err = c.pkcs11Delete(ctx, ref, confirm)
	case schemeTPM2:
		d, err = c.tpm2Delete(ctx, ref, confirm)
	case schemeSoft:
		d, err = c.softDelete(ref, confirm)
	}
	if err != nil {
		return c.fail(err)
	}
	return c.output(d, func(w io.Writer) {
		for _, s := range d.Deleted {
			fmt.Fprintf(w, "deleted %s\n", s)
		}
	})
}

// listView is the output of keys list.
type listView struct {
	Backend   string     `json:"backend"`
	Token     *tokenView `json:"token,omitempty"`
	Transport string     `json:"transport,omitempty"`
	Dir       string     `json:"dir,omitempty"`
	Keys      []*keyView `json:"keys"`
}

type tokenView struct {
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	ModulePath   string `json:"module_path"`
}

// deleteView is the output of keys delete.
type deleteView struct {
	// Deleted lists what was removed: "pkcs11 key ...", "key file ...",
	// "persistent handle ...".
	Deleted []string `json:"deleted"`
	Key     *keyView `json:"key"`
}

// printList writes a table of keys.
func printList(w io.Writer, l *listView) {
	switch {
	case l.Token != nil:
		fmt.Fprintf(w, "token %q (serial %s, %s %s) via %s\n", l.Token.Label, l.Token.Serial, l.Token.Manufacturer, l.Token.Model, l.Token.ModulePath)
	case l.Backend == schemeTPM2 && l.Dir != "":
		fmt.Fprintf(w, "TPM key files in %s (TPM %s)\n", l.Dir, l.Transport)
	case l.Backend == schemeTPM2:
		fmt.Fprintf(w, "persistent handles of the TPM at %s\n", l.Transport)
	case l.Backend == schemeSoft:
		fmt.Fprintf(w, "soft key files in %s (development only)\n", l.Dir)
	}
	if len(l.Keys) == 0 {
		fmt.Fprintln(w, "no keys")
		return
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	switch l.Backend {
	case schemePKCS11:
		fmt.Fprintln(tw, "ID\tLABEL\tKEM\tUSABLE\tATTRIBUTES\tPUBLIC KEY")
		for _, k := range l.Keys {
			a := k.PKCS11.Attributes
			var attrs []string
			for _, x := range []struct {
				on   bool
				name string
			}{{a.Sensitive, "sensitive"}, {a.Extractable, "extractable"}, {a.Derive, "derive"}, {a.Token, "token"}, {a.Private, "private"}, {a.Local, "local"}} {
				if x.on {
					attrs = append(attrs, x.name)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orNone(k.PKCS11.ID), orNone(k.PKCS11.Label), kemOrType(k), usableText(k), strings.Join(attrs, ","), shortHex(k.PublicKey))
		}
	case schemeTPM2:
		first := "HANDLE"
		if l.Dir != "" {
			first = "FILE"
		}
		fmt.Fprintf(tw, "%s\tKEM\tUSABLE\tPUBLIC KEY\n", first)
		for _, k := range l.Keys {
			name := k.TPM2.Handle
			if l.Dir != "" {
				name = k.TPM2.File
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, kemOrType(k), usableText(k), shortHex(k.PublicKey))
		}
	default:
		fmt.Fprintln(tw, "FILE\tKEM\tUSABLE\tPUBLIC KEY")
		for _, k := range l.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Soft.File, kemOrType(k), usableText(k), shortHex(k.PublicKey))
		}
	}
	tw.Flush()
	header := false
	for _, k := range l.Keys {
		if !k.Usable {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nreferences of the usable keys:")
			header = true
		}
		fmt.Fprintf(w, "  %s\n", k.Ref)
	}
}

func kemOrType(k *keyView) string {
	if k.KEM != "" {
		return k.KEM
	}
	if k.PKCS11 != nil && k.PKCS11.KeyType != "" {
		return k.PKCS11.KeyType
	}
	return "-"
}

func usableText(k *keyView) string {
	if k.Usable {
		return "yes"
	}
	return "no: " + k.Problem
}
