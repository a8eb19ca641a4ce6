package softhsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ConfName is the name of the configuration file [NewEnv] writes.
const ConfName = "softhsm2.conf"

// ErrConfNotActive is returned by [Env.InitToken] when SOFTHSM2_CONF in the
// process environment does not name the Env's configuration file.
var ErrConfNotActive = errors.New("softhsm: configuration not active in this process")

// ErrBadDir is returned by [NewEnv] for a directory whose path
// softhsm2.conf cannot express.
var ErrBadDir = errors.New("softhsm: unusable directory path")

// CheckDir reports whether softhsm2.conf can name a token directory under
// dir: the format has no quoting, so '#' (a comment), '=' (the separator),
// line breaks and surrounding blanks cannot be written. The error wraps
// [ErrBadDir].
func CheckDir(dir string) error {
	if strings.ContainsAny(dir, "\n\r#=") || strings.TrimSpace(dir) != dir {
		return fmt.Errorf("%w: %q (softhsm2.conf cannot express '#', '=', line breaks or surrounding blanks)", ErrBadDir, dir)
	}
	return nil
}

// Env is an isolated SoftHSM2 configuration: a softhsm2.conf whose token
// directory is private to it, so tokens created there never mix with the
// system's (/var/lib/softhsm/tokens) or another Env's.
//
// An Env is a set of files; it holds no open module and needs no closing
// beyond [Env.Remove].
type Env struct {
	// Dir is the directory holding ConfPath and TokenDir.
	Dir string
	// ConfPath is the softhsm2.conf to put in SOFTHSM2_CONF.
	ConfPath string
	// TokenDir is where SoftHSM2 keeps this Env's tokens.
	TokenDir string

	ownsDir bool
}

// NewEnv writes a softhsm2.conf and an empty token directory ("tokens") into
// dir, creating dir if needed. The path must pass [CheckDir]. With dir == ""
// it makes a fresh temporary directory, which [Env.Remove] deletes. An
// existing configuration in dir is overwritten; existing tokens in
// dir/tokens are kept (so an Env can be reopened by calling NewEnv with the
// same dir).
func NewEnv(dir string) (*Env, error) {
	owns := false
	if dir == "" {
		d, err := os.MkdirTemp("", "softhsm-")
		if err != nil {
			return nil, fmt.Errorf("softhsm: make temporary directory: %w", err)
		}
		dir, owns = d, true
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	if err := CheckDir(abs); err != nil {
		return nil, err
	}
	e := &Env{
		Dir:      abs,
		ConfPath: filepath.Join(abs, ConfName),
		TokenDir: filepath.Join(abs, "tokens"),
		ownsDir:  owns,
	}
	if err := os.MkdirAll(e.TokenDir, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm: make token directory: %w", err)
	}
	conf := "# Written by twoway-hsm (testenv/softhsm): an isolated SoftHSM2 configuration.\n" +
		"directories.tokendir = " + e.TokenDir + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n" +
		"slots.mechanisms = ALL\n" +
		"library.reset_on_fork = false\n"
	if err := os.WriteFile(e.ConfPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("softhsm: write %s: %w", e.ConfPath, err)
	}
	return e, nil
}

// Environ returns the environment entries ("SOFTHSM2_CONF=...") another
// process needs to see this Env's tokens; append them to exec.Cmd.Env.
func (e *Env) Environ() []string {
	return []string{ConfEnv + "=" + e.ConfPath}
}

// Activate points SOFTHSM2_CONF of this process at the Env. It changes the
// process environment, so it affects every later C_Initialize of SoftHSM in
// this process; it has no effect on a module that is already initialised.
// Tests should prefer t.Setenv(ConfEnv, e.ConfPath).
func (e *Env) Activate() error {
	if err := os.Setenv(ConfEnv, e.ConfPath); err != nil {
		return fmt.Errorf("softhsm: set %s: %w", ConfEnv, err)
	}
	return nil
}

// Active reports whether SOFTHSM2_CONF in this process names the Env.
func (e *Env) Active() bool { return os.Getenv(ConfEnv) == e.ConfPath }

// Remove deletes the configuration file and the token directory with every
// token in it, and the directory itself when [NewEnv] created it. No module
// in any process may be using the Env's tokens at that time.
func (e *Env) Remove() error {
	if e.ownsDir {
		return os.RemoveAll(e.Dir)
	}
	err1 := os.RemoveAll(e.TokenDir)
	err2 := os.Remove(e.ConfPath)
	if errors.Is(err2, os.ErrNotExist) {
		err2 = nil
	}
	return errors.Join(err1, err2)
}
