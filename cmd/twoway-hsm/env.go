package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
	"github.com/twoway-hsm/twoway-hsm/keystore/softstore"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
	"github.com/twoway-hsm/twoway-hsm/testenv/swtpm"
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
	return runSubcommand(ctx, env, "env", envUsage, []command{{name: "up", run: runEnvUp}, {name: "down", run: runEnvDown}}, args)
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
	v, err := envUp(ctx, dir)
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

// softhsmInstall is the command that installs SoftHSM2.
var softhsmInstall = strings.TrimPrefix(softhsm.InstallHint, "install with: ")

// envUp sets up the environment in dir.
func envUp(ctx context.Context, dir string) (*envView, error) {
	v := &envView{Dir: dir, Environment: map[string]string{}, Keys: []envKey{}, Missing: []envMissing{}}
	// Mark the directory first, so that env down can clean up whatever
	// happens next.
	if err := writeEnvState(dir, v); err != nil {
		return nil, err
	}

	if mp, err := softhsm.FindModule(""); err != nil {
		v.Missing = append(v.Missing, envMissing{Tool: "softhsm2", Install: softhsmInstall, Error: err.Error()})
	} else if err := envSoftHSMUp(ctx, dir, mp, v); err != nil {
		return nil, fmt.Errorf("SoftHSM2: %w", err)
	}

	if _, _, err := swtpm.FindBinaries(); err != nil {
		v.Missing = append(v.Missing, envMissing{Tool: "swtpm", Install: swtpm.InstallHint, Error: err.Error()})
	} else if err := envSWTPMUp(ctx, dir, v); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}

	soft, err := createEnvKey(ctx, softstore.Ref(filepath.Join(dir, "soft-x25519.pem")), kem.DHKEMX25519HKDFSHA256)
	if err != nil {
		return nil, err
	}
	v.Keys = append(v.Keys, envKey{Name: "soft-x25519", Backend: soft.Backend, Ref: soft.Ref,
		KEM: kemShort(soft.KEM), PublicKey: hex.EncodeToString(soft.PublicKey)})

	if conf, ok := v.Environment[softhsm.ConfEnv]; ok {
		v.EnvFile = filepath.Join(dir, "env.sh")
		if err := softstore.WriteNewFile(v.EnvFile, []byte("export "+softhsm.ConfEnv+"="+shellQuote(conf)+"\n")); err != nil {
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
	sh, err := newSoftHSMSetup(filepath.Join(dir, "softhsm"), modulePath, "twoway-dev")
	if err != nil {
		return err
	}
	k, err := createEnvKey(ctx, sh.keyRef(1, "dev-p256"), kem.DHKEMP256HKDFSHA256)
	if err != nil {
		return err
	}
	v.SoftHSM = &envSoftHSM{ModulePath: modulePath, Conf: sh.env.ConfPath, Token: sh.token.Label, Serial: sh.token.Serial,
		PINFile: sh.pinFile, SOPINFile: sh.soPINFile, TokenURI: sh.tokenRef()}
	v.Environment[softhsm.ConfEnv] = sh.env.ConfPath
	v.Keys = append(v.Keys, envKey{Name: "pkcs11-p256", Backend: k.Backend, Ref: k.Ref,
		KEM: kemShort(k.KEM), PublicKey: hex.EncodeToString(k.PublicKey)})
	return nil
}

// createEnvKey makes a key of a development environment through its key
// store.
func createEnvKey(ctx context.Context, ref string, id kem.ID) (*keystore.KeyInfo, error) {
	st, err := keystore.For(ref)
	if err != nil {
		return nil, err
	}
	return st.Create(ctx, ref, id, nil)
}

// softHSMSetup is a SoftHSM2 configuration in a directory of its own with
// one token whose random PINs are in 0600 files there: what env up and the
// demo make.
type softHSMSetup struct {
	env        *softhsm.Env
	token      softhsm.Token
	modulePath string
	pinFile    string // the user PIN
	soPINFile  string // the security officer's PIN
}

// newSoftHSMSetup makes the configuration in dir, activates it in this
// process (see softhsm.Env.Activate) and initialises a token with random
// PINs through PKCS#11, so that no PIN is on a command line.
func newSoftHSMSetup(dir, modulePath, label string) (*softHSMSetup, error) {
	senv, err := softhsm.NewEnv(dir)
	if err != nil {
		return nil, err
	}
	if err := senv.Activate(); err != nil {
		return nil, err
	}
	s := &softHSMSetup{env: senv, modulePath: modulePath,
		pinFile: filepath.Join(senv.Dir, "user.pin"), soPINFile: filepath.Join(senv.Dir, "so.pin")}
	userPIN, soPIN := rand.Text(), rand.Text()
	if err := softstore.WriteNewFile(s.pinFile, []byte(userPIN+"\n")); err != nil {
		return nil, err
	}
	if err := softstore.WriteNewFile(s.soPINFile, []byte(soPIN+"\n")); err != nil {
		return nil, err
	}
	if s.token, err = senv.InitToken(modulePath, label, soPIN, userPIN); err != nil {
		return nil, err
	}
	return s, nil
}

// tokenRef returns the URI of the token, with the module and the user
// PIN file.
func (s *softHSMSetup) tokenRef() string {
	return s.ref(nil)
}

// keyRef returns the URI of a key on the token: id= the one byte id,
// object= the label.
func (s *softHSMSetup) keyRef(id byte, label string) string {
	return s.ref([]keyref.Attr{{Name: "id", Value: string([]byte{id})}, {Name: "object", Value: label}})
}

func (s *softHSMSetup) ref(key []keyref.Attr) string {
	return (&keyref.Ref{Scheme: "pkcs11",
		Path:  append([]keyref.Attr{{Name: "token", Value: s.token.Label}, {Name: "serial", Value: s.token.Serial}}, key...),
		Query: []keyref.Attr{{Name: "module-path", Value: s.modulePath}, {Name: "pin-source", Value: "file:" + s.pinFile}}}).String()
}

// envSWTPMUp starts a detached swtpm and makes a P-256 TPM key file.
func envSWTPMUp(ctx context.Context, dir string, v *envView) error {
	tdir := filepath.Join(dir, "swtpm")
	in, err := startSWTPM(ctx, tdir, true)
	if err != nil {
		return err
	}
	v.SWTPM = &envSWTPM{Pid: in.Pid(), Transport: in.Transport(), Dir: tdir}
	// Record the instance now, so that a failure below still stops it.
	if err := writeEnvState(dir, v); err != nil {
		return err
	}
	k, err := createEnvKey(ctx, tpmFileRef(filepath.Join(dir, "tpm-p256.pem"), in.Transport()), kem.DHKEMP256HKDFSHA256)
	if err != nil {
		return err
	}
	v.Keys = append(v.Keys, envKey{Name: "tpm2-p256", Backend: k.Backend, Ref: k.Ref,
		KEM: kemShort(k.KEM), PublicKey: hex.EncodeToString(k.PublicKey)})
	return nil
}

// startSWTPM starts a swtpm in dir: on unix sockets, which keep the TPM to
// this user, when their paths fit in the 108 bytes the kernel allows, and
// on loopback TCP ports otherwise. A detached one outlives this process.
func startSWTPM(ctx context.Context, dir string, detached bool) (*swtpm.Instance, error) {
	unix := len(filepath.Join(dir, "data.sock")) < 100
	return swtpm.Start(ctx, swtpm.Config{Dir: dir, Unix: unix, Detached: detached})
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
	self := selfCommand()
	var out []string
	if v.SoftHSM != nil {
		out = append(out, self+" keys list "+shellQuote(v.SoftHSM.TokenURI))
	}
	var keyArgs, refs []string
	for i, k := range v.Keys {
		keyArgs = append(keyArgs, fmt.Sprintf("--key %d=%s", i+1, shellQuote(k.Ref)))
		refs = append(refs, k.Ref)
	}
	if len(refs) > 0 {
		out = append(out, self+" keys show "+shellQuote(refs[0]))
		out = append(out, self+" key-config "+strings.Join(keyArgs, " "))
		out = append(out, self+" selftest --key "+shellQuote(refs[0]))
	}
	if v.SWTPM != nil {
		out = append(out, self+" keys list "+shellQuote("tpm2:?tpm="+v.SWTPM.Transport))
	}
	out = append(out, self+" env down --dir "+shellQuote(v.Dir))
	return out
}

// selfCommand is how the operator runs this binary again, for the
// commands env up suggests: "twoway-hsm" when that is on PATH and is this
// binary, "go run ./cmd/twoway-hsm" when this binary was built by go run
// (in a temporary directory it deletes), and its absolute path otherwise.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "twoway-hsm"
	}
	if p, err := exec.LookPath("twoway-hsm"); err == nil {
		if a, b := evalPath(p), evalPath(exe); a == b {
			return "twoway-hsm"
		}
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/twoway-hsm"
	}
	return shellQuote(exe)
}

func evalPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
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
		if b, err := keystore.Lookup(k.Ref); err == nil && b.Development {
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
			fmt.Fprintf(w, "  %s: install with: %s\n", m.Tool, m.Install)
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
