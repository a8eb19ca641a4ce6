package testenv

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/testenv/swtpm"
)

// SWTPM is a swtpm TPM 2.0 simulator started for one test (testenv/swtpm), with
// its state in a temporary directory and its data and control channels on
// free loopback TCP ports (or unix sockets, see SWTPMUnixSocket). It is
// stopped when the test ends, so no swtpm outlives its test; it also dies
// with the test binary (SIGKILL via the parent-death signal on Linux).
//
// swtpm serves one connection at a time on its data channel: a second
// client waits until the first disconnects.
type SWTPM struct {
	tb testing.TB
	*swtpm.Instance
	dir   string
	caDir string
}

// EKRoot returns the PEM file of the root CA that signed the EK
// certificates (SWTPMEKCert), and the issuer (intermediate) certificate
// between them; the TPM's NV holds no intermediate. It fails the test
// for an instance started without SWTPMEKCert.
func (s *SWTPM) EKRoot() (root, issuer string) {
	s.tb.Helper()
	if s.caDir == "" {
		s.tb.Fatal("swtpm: EKRoot: started without SWTPMEKCert")
	}
	return filepath.Join(s.caDir, swtpm.CARootCertFile), filepath.Join(s.caDir, swtpm.CAIssuerCertFile)
}

// EKPools returns EKRoot's certificates as pools, for attest.Options'
// Roots and Intermediates.
func (s *SWTPM) EKPools() (roots, intermediates *x509.CertPool) {
	s.tb.Helper()
	root, issuer := s.EKRoot()
	return CertPool(s.tb, root), CertPool(s.tb, issuer)
}

// CertPool returns a pool of the certificates in the PEM file name,
// failing tb if it cannot be read or holds none.
func CertPool(tb testing.TB, name string) *x509.CertPool {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		tb.Fatalf("%s: no certificate", name)
	}
	return p
}

// SWTPMOption configures StartSWTPM.
type SWTPMOption func(*swtpm.Config)

// SWTPMUnixSocket makes swtpm listen on unix sockets in its temporary
// directory instead of loopback TCP ports.
func SWTPMUnixSocket() SWTPMOption { return func(c *swtpm.Config) { c.Unix = true } }

// SWTPMEKCert manufactures the TPM before it starts, as a TPM vendor
// would (swtpm.Provision: swtpm_setup --create-ek-cert
// --create-platform-cert): EKs with certificates in NV, signed by a
// swtpm-localca CA in caDir; "" means a CA of its own in the instance's
// directory. Give two instances the same caDir for two TPMs from one
// "manufacturer". The CA's root is SWTPM.EKRoot. Without swtpm_setup the
// test is skipped (or fails with TWOWAY_HSM_REQUIRED=1).
func SWTPMEKCert(caDir string) SWTPMOption {
	return func(c *swtpm.Config) {
		c.EKCertCA = caDir
		if caDir == "" {
			c.EKCertCA = "-"
		}
	}
}

// StartSWTPM starts a fresh swtpm (an unprovisioned TPM 2.0 with new seeds,
// started with TPM2_Startup(CLEAR)) and waits until it answers
// TPM2_GetRandom. It skips the test when swtpm or swtpm_ioctl is missing,
// unless TWOWAY_HSM_REQUIRED=1, in which case it fails.
func StartSWTPM(tb testing.TB, opts ...SWTPMOption) *SWTPM {
	tb.Helper()
	var cfg swtpm.Config
	var err error
	if cfg.Swtpm, cfg.Ioctl, err = swtpm.FindBinaries(); err != nil {
		Unavailable(tb, err.Error())
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.EKCertCA != "" {
		if _, _, err := swtpm.FindSetupBinaries(); err != nil {
			Unavailable(tb, err.Error())
		}
	}
	// A short directory name: unix socket paths are limited to 108 bytes,
	// and test names can be long.
	dir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		tb.Fatalf("swtpm: %v", err)
	}
	cfg.Dir = dir
	if cfg.EKCertCA == "-" {
		cfg.EKCertCA = filepath.Join(dir, "ca")
	}
	s := &SWTPM{tb: tb, dir: dir, caDir: cfg.EKCertCA}
	tb.Cleanup(s.cleanup)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := swtpm.Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	s.Instance = in
	return s
}

// Start starts swtpm again on the same state directory, ports or sockets,
// after Stop or Kill9.
func (s *SWTPM) Start() {
	s.tb.Helper()
	if err := s.Instance.Restart(context.Background()); err != nil {
		s.tb.Fatalf("%v", err)
	}
}

// Stop shuts swtpm down gracefully and waits for it to exit.
func (s *SWTPM) Stop() {
	s.tb.Helper()
	if err := s.Instance.Stop(context.Background()); err != nil {
		s.tb.Fatalf("swtpm: stop: %v\n%s", err, s.LogTail())
	}
}

// Restart is Stop followed by Start.
func (s *SWTPM) Restart() {
	s.tb.Helper()
	s.Stop()
	s.Start()
}

// Kill9 kills swtpm with SIGKILL, as a crash would, and waits for it to
// exit. Start brings it back on the same state.
func (s *SWTPM) Kill9() {
	s.tb.Helper()
	if err := s.Kill(); err != nil {
		s.tb.Fatalf("%v", err)
	}
}

// Init sends the TPM a hardware TPM_Init through the control channel, as a
// platform reset would, while the process and any client connection stay
// up. The TPM then needs TPM2_Startup.
func (s *SWTPM) Init() {
	s.tb.Helper()
	if err := s.Instance.Init(context.Background()); err != nil {
		s.tb.Fatalf("swtpm: %v", err)
	}
}

func (s *SWTPM) cleanup() {
	if s.Instance != nil {
		if err := s.Instance.Stop(context.Background()); err != nil {
			s.tb.Errorf("swtpm: stop at cleanup: %v", err)
		}
		if s.tb.Failed() {
			s.tb.Logf("swtpm log (%s):\n%s", s.LogPath(), s.LogTail())
		}
	}
	os.RemoveAll(s.dir)
}
