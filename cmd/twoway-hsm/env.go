package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/hsm/softhsm"
	"github.com/twoway-hsm/twoway-hsm/hsm/swtpm"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

const envUsage = `Usage: twoway-hsm env up [--dir DIR] [--json]
       twoway-hsm env down [--dir DIR] [--json]

A local development environment in one directory (default ./twoway-hsm-env):
a SoftHSM2 token with a P-256 key, a swtpm TPM simulator (left running in
the background) with a P-256 TPM key file, and a soft X25519 key file.
'env up' prints the key references, the SOFTHSM2_CONF line to export and
commands to try; 'env down' stops the swtpm and removes the directory.

The token's user and SO PINs are random, written to user.pin and so.pin
(mode 0600) in the directory, and never printed: references name the PIN
file (pin-source=file:...). Without softhsm2 or swtpm, 'env up' sets up
the rest and says what to install. 'env up' refuses a directory that
exists and is not empty: run 'env down' first.

Examples:
  twoway-hsm env up
  eval "$(twoway-hsm env up --dir /tmp/tw | grep '^export ')"
  twoway-hsm env down
`

// envStateFile marks a directory made by env up and records what is in
// it; env down removes only directories that have it.
const envStateFile = "twoway-hsm-env.json"

// envView is what env up prints (and records in envStateFile).
type envView struct {
	Dir string `json:"dir"`
	// Environment is what processes using the SoftHSM token need
	// (SOFTHSM2_CONF); EnvFile is a shell file that exports it.
	Environment map[string]string `json:"environment"`
	EnvFile     string            `json:"env_file,omitempty"`
	SoftHSM     *envSoftHSM       `json:"softhsm"`
	SWTPM       *envSWTPM         `json:"swtpm"`
	Keys        []envKey          `json:"keys"`
	// Missing lists the tools that were not found, with how to install
	// them; the parts that need them were skipped.
	Missing  []envMissing `json:"missing"`
	Commands []string     `json:"commands"`
}

type envSoftHSM struct {
	ModulePath string `json:"module_path"`
	Conf       string `json:"conf"`
	Token      string `json:"token"`
	Serial     string `json:"serial"`
	PINFile    string `json:"pin_file"`
	SOPINFile  string `json:"so_pin_file"`
	TokenURI   string `json:"token_uri"`
}

type envSWTPM struct {
	Pid       int    `json:"pid"`
	Transport string `json:"transport"`
	Dir       string `json:"dir"`
}

type envKey struct {
	Name      string `json:"name"`
	Backend   string `json:"backend"`
	Ref       string `json:"ref"`
	KEM       string `json:"kem"`
	PublicKey string `json:"public_key"`
}

type envMissing struct {
	Tool    string `json:"tool"`
	Install string `json:"install"`
	Error   string `json:"error"`
}

func runEnv(ctx context.Context, env *environment, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(env.stderr, envUsage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(env.stdout, envUsage)
		return exitOK
	case "up":
		return runEnvUp(ctx, env, args[1:])
	case "down":
		return runEnvDown(ctx, env, args[1:])
	}
	fmt.Fprintf(env.stderr, "twoway-hsm env: unknown subcommand %q\n\n", args[0])
	fmt.Fprint(env.stderr, envUsage)
	return exitUsage
}

// envDirFlag parses the flags of env up/down.
func envDirFlag(c *cmdline, args []string) (string, int, bool) {
	dir := c.fs.String("dir", "twoway-hsm-env", "the environment's `directory`")
	c.addJSON()
	pos, code, ok := c.parse(args)
	if !ok {
		return "", code, false
	}
	if len(pos) > 0 {
		return "", c.fail(usagef("unexpected argument %q (the directory is given with --dir)", pos[0])), false
	}
	if *dir == "" {
		return "", c.fail(usagef("empty --dir")), false
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return "", c.fail(err), false
	}
	return abs, 0, true
}

func runEnvUp(ctx context.Context, env *environment, args []string) int {
	c := newCmdline(env, "env up", envUsage)
	dir, code, ok := envDirFlag(c, args)
	if !ok {
		return code
	}
	created, err := prepareEnvDir(dir)
	if err != nil {
		return c.fail(err)
	}
	v, err := envUp(ctx, dir, env.stderr)
	if err != nil {
		// Leave nothing behind: no swtpm, no half-made directory.
		if serr := swtpm.StopDir(context.WithoutCancel(ctx), filepath.Join(dir, "swtpm")); serr != nil {
			err = errors.Join(err, serr)
		}
		if created {
			os.RemoveAll(dir)
		} else {
			removeContents(dir)
		}
		return c.fail(err)
	}
	return c.output(v, func(w io.Writer) { printEnv(w, v) })
}

// prepareEnvDir creates dir (0700), or accepts an existing empty one.
func prepareEnvDir(dir string) (created bool, err error) {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, err
	case len(ents) > 0:
		if _, err := os.Stat(filepath.Join(dir, envStateFile)); err == nil {
			return false, fmt.Errorf("%s already holds a twoway-hsm environment; it is not reused: run 'twoway-hsm env down --dir %s' first, or choose another --dir", dir, shellQuote(dir))
		}
		return false, fmt.Errorf("%s exists and is not empty; choose another --dir (env up only uses a new or empty directory)", dir)
	}
	return false, nil
}

func removeContents(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// newEnvPIN returns a random PIN of 24 hex digits.
func newEnvPIN() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	defer clear(b)
	return hex.EncodeToString(b), nil
}

// envUp sets up the environment in dir. Progress goes to log.
func envUp(ctx context.Context, dir string, log io.Writer) (*envView, error) {
	v := &envView{Dir: dir, Environment: map[string]string{}, Keys: []envKey{}, Missing: []envMissing{}}
	// Mark the directory first, so that env down can clean up whatever
	// happens next.
	if err := writeEnvState(dir, v); err != nil {
		return nil, err
	}

	if mp, err := softhsm.FindModule(""); err != nil {
		v.Missing = append(v.Missing, envMissing{Tool: "softhsm2", Install: "apt-get install -y softhsm2", Error: err.Error()})
	} else if err := envSoftHSMUp(ctx, dir, mp, v); err != nil {
		return nil, fmt.Errorf("SoftHSM2: %w", err)
	}

	if _, _, err := swtpm.FindBinaries(); err != nil {
		v.Missing = append(v.Missing, envMissing{Tool: "swtpm", Install: swtpm.InstallHint, Error: err.Error()})
	} else if err := envSWTPMUp(ctx, dir, v); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}

	soft, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	if err != nil {
		return nil, err
	}
	pemBytes, err := kem.MarshalPrivateKeyPEM(soft)
	if err != nil {
		return nil, err
	}
	softPath := filepath.Join(dir, "soft-x25519.pem")
	err = writeNewFile(softPath, pemBytes, 0o600)
	clear(pemBytes)
	if err != nil {
		return nil, err
	}
	v.Keys = append(v.Keys, envKey{Name: "soft-x25519", Backend: schemeSoft, Ref: softFileRef(softPath),
		KEM: kemShort(soft.KEM()), PublicKey: hex.EncodeToString(soft.PublicKeyBytes())})

	if conf, ok := v.Environment[softhsm.ConfEnv]; ok {
		v.EnvFile = filepath.Join(dir, "env.sh")
		if err := writeNewFile(v.EnvFile, []byte("export "+softhsm.ConfEnv+"="+shellQuote(conf)+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	v.Commands = envCommands(v)
	if err := writeEnvState(dir, v); err != nil {
		return nil, err
	}
	return v, nil
}

// envSoftHSMUp makes the SoftHSM2 configuration and token, and a P-256 key.
func envSoftHSMUp(ctx context.Context, dir, modulePath string, v *envView) error {
	senv, err := softhsm.NewEnv(filepath.Join(dir, "softhsm"))
	if err != nil {
		return err
	}
	if err := senv.Activate(); err != nil {
		return err
	}
	userPIN, err := newEnvPIN()
	if err != nil {
		return err
	}
	soPIN, err := newEnvPIN()
	if err != nil {
		return err
	}
	pinFile := filepath.Join(senv.Dir, "user.pin")
	soPINFile := filepath.Join(senv.Dir, "so.pin")
	if err := writeNewFile(pinFile, []byte(userPIN+"\n"), 0o600); err != nil {
		return err
	}
	if err := writeNewFile(soPINFile, []byte(soPIN+"\n"), 0o600); err != nil {
		return err
	}
	tok, err := senv.InitToken(modulePath, "twoway-dev", soPIN, userPIN)
	if err != nil {
		return err
	}
	tokenURI := (&pkcs11.URI{Token: pkcs11.TokenSelector{Label: tok.Label, Serial: tok.Serial},
		ModulePath: modulePath, PINSource: "file:" + pinFile}).String()
	t, err := pkcs11.OpenToken(ctx, tokenURI, pkcs11.WithModulePath(modulePath))
	if err != nil {
		return err
	}
	defer t.Close()
	k, err := t.GenerateKey(ctx, kem.DHKEMP256HKDFSHA256, pkcs11.KeyRef{ID: []byte{1}, Label: "dev-p256"})
	if err != nil {
		return err
	}
	info := k.Info()
	ref := (&pkcs11.URI{Token: pkcs11.TokenSelector{Label: tok.Label, Serial: tok.Serial},
		Key: pkcs11.KeyRef{ID: info.ID, Label: info.Label}, ModulePath: modulePath, PINSource: "file:" + pinFile}).String()
	v.SoftHSM = &envSoftHSM{ModulePath: modulePath, Conf: senv.ConfPath, Token: tok.Label, Serial: tok.Serial,
		PINFile: pinFile, SOPINFile: soPINFile, TokenURI: tokenURI}
	v.Environment[softhsm.ConfEnv] = senv.ConfPath
	v.Keys = append(v.Keys, envKey{Name: "pkcs11-p256", Backend: schemePKCS11, Ref: ref,
		KEM: kemShort(info.KEM), PublicKey: hex.EncodeToString(info.PublicKey)})
	return nil
}

// envSWTPMUp starts a detached swtpm and makes a P-256 TPM key file.
func envSWTPMUp(ctx context.Context, dir string, v *envView) error {
	tdir := filepath.Join(dir, "swtpm")
	// Unix sockets keep the TPM to this user; their paths are limited to
	// 108 bytes, so a deep directory gets loopback TCP ports instead.
	unix := len(filepath.Join(tdir, "data.sock")) < 100
	in, err := swtpm.Start(ctx, swtpm.Config{Dir: tdir, Unix: unix, Detached: true})
	if err != nil {
		return err
	}
	v.SWTPM = &envSWTPM{Pid: in.Pid(), Transport: in.Transport(), Dir: tdir}
	// Record the instance now, so that a failure below still stops it.
	if err := writeEnvState(dir, v); err != nil {
		return err
	}
	t, err := tpm2.Open(ctx, in.Transport())
	if err != nil {
		return err
	}
	defer t.Close()
	k, err := t.CreateKey(ctx, ecdh.P256(), tpm2.WithDescription("twoway-hsm env p256"))
	if err != nil {
		return err
	}
	defer k.Close()
	file := filepath.Join(dir, "tpm-p256.pem")
	if err := k.WriteKeyFile(file); err != nil {
		return err
	}
	ref := (&tpm2.KeyRef{File: file, TPM: in.Transport()}).String()
	v.Keys = append(v.Keys, envKey{Name: "tpm2-p256", Backend: schemeTPM2, Ref: ref,
		KEM: kemShort(k.KEM()), PublicKey: hex.EncodeToString(k.PublicKeyBytes())})
	return nil
}

func writeEnvState(dir string, v *envView) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, envStateFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// envCommands are the example commands env up suggests.
func envCommands(v *envView) []string {
	var out []string
	if v.SoftHSM != nil {
		out = append(out, "twoway-hsm keys list "+shellQuote(v.SoftHSM.TokenURI))
	}
	var keyArgs, refs []string
	for i, k := range v.Keys {
		keyArgs = append(keyArgs, fmt.Sprintf("--key %d=%s", i+1, shellQuote(k.Ref)))
		refs = append(refs, k.Ref)
	}
	if len(refs) > 0 {
		out = append(out, "twoway-hsm keys show "+shellQuote(refs[0]))
		out = append(out, "twoway-hsm key-config "+strings.Join(keyArgs, " "))
		out = append(out, "twoway-hsm selftest --key "+shellQuote(refs[0]))
	}
	if v.SWTPM != nil {
		out = append(out, "twoway-hsm keys list "+shellQuote("tpm2:?tpm="+v.SWTPM.Transport))
	}
	out = append(out, "twoway-hsm env down --dir "+shellQuote(v.Dir))
	return out
}

func printEnv(w io.Writer, v *envView) {
	fmt.Fprintf(w, "twoway-hsm development environment in %s\n\n", v.Dir)
	if s := v.SoftHSM; s != nil {
		fmt.Fprintf(w, "SoftHSM2 token %q (serial %s); its user PIN is in %s\n", s.Token, s.Serial, s.PINFile)
	}
	if s := v.SWTPM; s != nil {
		fmt.Fprintf(w, "swtpm running in the background (pid %d) at %s\n", s.Pid, s.Transport)
	}
	fmt.Fprintln(w, "\nKeys (references to give key-config, selftest, a plugin or a server):")
	tw := newTable(w)
	for _, k := range v.Keys {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", k.Name, k.KEM, k.Ref)
	}
	tw.Flush()
	for _, k := range v.Keys {
		if k.Backend == schemeSoft {
			fmt.Fprintf(w, "  (%s is a soft key: development only, the private key is in a file)\n", k.Name)
		}
	}
	if len(v.Environment) > 0 {
		fmt.Fprintln(w, "\nEnvironment (the commands, plugins and servers that use the token need it):")
		for name, val := range v.Environment {
			fmt.Fprintf(w, "export %s=%s\n", name, shellQuote(val))
		}
		if v.EnvFile != "" {
			fmt.Fprintf(w, "  (or: . %s)\n", shellQuote(v.EnvFile))
		}
	}
	if len(v.Missing) > 0 {
		fmt.Fprintln(w, "\nSkipped, because a tool is missing:")
		for _, m := range v.Missing {
			fmt.Fprintf(w, "  %s: install with: %s\n", m.Tool, strings.TrimPrefix(m.Install, "install with: "))
		}
	}
	fmt.Fprintln(w, "\nTry:")
	for _, cmd := range v.Commands {
		fmt.Fprintf(w, "  %s\n", cmd)
	}
}

// envDownView is what env down prints.
type envDownView struct {
	Dir string `json:"dir"`
	// StoppedPid is the swtpm process that was stopped, 0 if none ran.
	StoppedPid int  `json:"stopped_swtpm_pid"`
	Removed    bool `json:"removed"`
}

func runEnvDown(ctx context.Context, env *environment, args []string) int {
	c := newCmdline(env, "env down", envUsage)
	dir, code, ok := envDirFlag(c, args)
	if !ok {
		return code
	}
	d := &envDownView{Dir: dir}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if !c.json {
			fmt.Fprintf(env.stderr, "no environment in %s: nothing to do\n", dir)
		}
		return c.output(d, func(io.Writer) {})
	}
	b, err := os.ReadFile(filepath.Join(dir, envStateFile))
	if err != nil {
		return c.fail(fmt.Errorf("%s does not look like a twoway-hsm environment (no %s): not removing it", dir, envStateFile))
	}
	var v envView
	_ = json.Unmarshal(b, &v)
	if v.SWTPM != nil && pidAlive(v.SWTPM.Pid) {
		d.StoppedPid = v.SWTPM.Pid
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := swtpm.StopDir(sctx, filepath.Join(dir, "swtpm")); err != nil {
		return c.fail(fmt.Errorf("stopping the environment's swtpm: %w; stop it by hand, then run env down again", err))
	}
	if err := os.RemoveAll(dir); err != nil {
		return c.fail(err)
	}
	d.Removed = true
	return c.output(d, func(w io.Writer) {
		if d.StoppedPid != 0 {
			fmt.Fprintf(w, "stopped swtpm (pid %d)\n", d.StoppedPid)
		}
		fmt.Fprintf(w, "removed %s\n", dir)
	})
}

// pidAlive reports whether a process runs (zombies count as gone).
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}
