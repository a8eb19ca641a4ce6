package swtpm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// SetupInstallHint names the Debian package that provides swtpm_setup and
// swtpm_localca.
const SetupInstallHint = "apt-get install -y swtpm-tools"

// ErrSetupNotFound is returned when swtpm_setup or swtpm_localca is not
// installed.
var ErrSetupNotFound = errors.New("swtpm: swtpm_setup or swtpm_localca not installed (" + SetupInstallHint + ")")

// The files of a swtpm-localca CA directory (swtpm_localca(8)): the root
// CA's certificate and the issuer (intermediate) certificate that signs EK
// and platform certificates.
const (
	CARootCertFile   = "swtpm-localca-rootca-cert.pem"
	CAIssuerCertFile = "issuercert.pem"
)

// FindSetupBinaries returns the paths of swtpm_setup and swtpm_localca.
func FindSetupBinaries() (setup, localca string, err error) {
	if setup, err = exec.LookPath("swtpm_setup"); err != nil {
		return "", "", fmt.Errorf("%w: swtpm_setup not in PATH", ErrSetupNotFound)
	}
	if localca, err = exec.LookPath("swtpm_localca"); err != nil {
		return "", "", fmt.Errorf("%w: swtpm_localca not in PATH", ErrSetupNotFound)
	}
	return setup, localca, nil
}

// Provision manufactures the TPM whose state is in stateDir, as a TPM
// vendor would: swtpm_setup --tpm2 --create-ek-cert --create-platform-cert
// creates the RSA 2048 and ECC EKs (persistent at 0x81010001 and
// 0x81010016), writes their certificates to the TCG NV indices (RSA
// 0x01c00002, ECC P-384 0x01c00016) and the platform certificate to
// 0x01c08000. The certificates are signed by a swtpm-localca CA in caDir,
// which swtpm_localca creates (a root and an issuer) when caDir has none:
// its configuration files are written to caDir too, so nothing outside
// caDir and stateDir is read or written (not /var/lib/swtpm-localca, not
// /etc/swtpm_setup.conf). The root certificate is caDir/CARootCertFile.
// A stateDir that already holds a TPM state is left alone.
func Provision(ctx context.Context, stateDir, caDir string) error {
	if m, _ := filepath.Glob(filepath.Join(stateDir, "tpm2-*.permall")); len(m) > 0 {
		return nil
	}
	setup, localca, err := FindSetupBinaries()
	if err != nil {
		return err
	}
	if caDir, err = filepath.Abs(caDir); err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	files := map[string]string{
		"swtpm-localca.conf": "statedir = " + caDir + "\n" +
			"signingkey = " + filepath.Join(caDir, "signkey.pem") + "\n" +
			"issuercert = " + filepath.Join(caDir, CAIssuerCertFile) + "\n" +
			"certserial = " + filepath.Join(caDir, "certserial") + "\n",
		"swtpm-localca.options": "--platform-manufacturer twoway-hsm\n--platform-version 2.1\n--platform-model swtpm\n",
		"swtpm_setup.conf": "create_certs_tool = " + localca + "\n" +
			"create_certs_tool_config = " + filepath.Join(caDir, "swtpm-localca.conf") + "\n" +
			"create_certs_tool_options = " + filepath.Join(caDir, "swtpm-localca.options") + "\n" +
			"active_pcr_banks = sha256\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(caDir, name), []byte(content), 0o600); err != nil {
			return fmt.Errorf("swtpm: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, setup, "--tpm2", "--create-ek-cert", "--create-platform-cert",
		"--tpmstate", stateDir, "--config", filepath.Join(caDir, "swtpm_setup.conf"),
		"--logfile", filepath.Join(caDir, "swtpm_setup.log"))
	// swtpm_setup looks for its own files under $XDG_CONFIG_HOME and $HOME
	// when --config is not enough; keep it inside caDir.
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+caDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(caDir, "swtpm_setup.log"))
		return fmt.Errorf("swtpm: swtpm_setup --create-ek-cert: %v: %s\n%s", err, bytes.TrimSpace(out), tail(log))
	}
	if _, err := os.Stat(filepath.Join(caDir, CARootCertFile)); err != nil {
		return fmt.Errorf("swtpm: swtpm_setup left no CA root certificate in %s: %w", caDir, err)
	}
	return nil
}

func tail(b []byte) string {
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
