package softhsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ModuleEnv names the environment variable that may point at the SoftHSM2
// PKCS#11 module, overriding the search of the standard locations.
const ModuleEnv = "SOFTHSM2_MODULE"

// ConfEnv is the environment variable SoftHSM2 reads its configuration file
// from at C_Initialize.
const ConfEnv = "SOFTHSM2_CONF"

// InstallHint says how to install SoftHSM2 on Debian and Ubuntu; error
// messages and skipped tests quote it.
const InstallHint = "install with: apt-get install -y softhsm2"

// ErrNotFound is returned (wrapped) when the SoftHSM2 module cannot be found.
var ErrNotFound = errors.New("softhsm: module libsofthsm2.so not found")

// moduleGlobs are the places distributions install libsofthsm2.so, most
// common first. Patterns are expanded with filepath.Glob.
var moduleGlobs = []string{
	"/usr/lib/softhsm/libsofthsm2.so",             // Debian, Ubuntu
	"/usr/lib/*-linux-gnu/softhsm/libsofthsm2.so", // Debian multiarch
	"/usr/lib64/pkcs11/libsofthsm2.so",            // Fedora, RHEL
	"/usr/lib64/softhsm/libsofthsm2.so",           // openSUSE
	"/usr/lib/pkcs11/libsofthsm2.so",              // Arch, Alpine
	"/usr/local/lib/softhsm/libsofthsm2.so",       // source builds, FreeBSD, Homebrew (Intel)
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",    // Homebrew (Apple silicon)
	"/usr/pkg/lib/softhsm/libsofthsm2.so",         // NetBSD pkgsrc
}

// CandidatePaths returns the standard locations of libsofthsm2.so that exist
// on this machine, in the order [FindModule] tries them.
func CandidatePaths() []string {
	var out []string
	for _, g := range moduleGlobs {
		matches, _ := filepath.Glob(g)
		for _, m := range matches {
			if isFile(m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// FindModule returns the path of the SoftHSM2 PKCS#11 module. An explicit
// path wins and must exist; otherwise $SOFTHSM2_MODULE (which must exist when
// set); otherwise the first of [CandidatePaths]. The error wraps
// [ErrNotFound] and says how to install SoftHSM2.
func FindModule(explicit string) (string, error) {
	if explicit != "" {
		if !isFile(explicit) {
			return "", fmt.Errorf("%w: %s does not exist or is not a file", ErrNotFound, explicit)
		}
		return explicit, nil
	}
	if p := os.Getenv(ModuleEnv); p != "" {
		if !isFile(p) {
			return "", fmt.Errorf("%w: %s=%s does not exist or is not a file", ErrNotFound, ModuleEnv, p)
		}
		return p, nil
	}
	if c := CandidatePaths(); len(c) > 0 {
		return c[0], nil
	}
	return "", fmt.Errorf("%w in the standard locations (set %s to its path, or %s)", ErrNotFound, ModuleEnv, InstallHint)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
