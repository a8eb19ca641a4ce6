package all

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/attest"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// TestAttesterOf: a TPM key opened through the key store is an Attester;
// PKCS#11 and soft keys are not, and AttesterOf says why with an error
// wrapping attest.ErrNotAttestable.
func TestAttesterOf(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := testenv.SoftHSM(t)
	for _, kv := range tok.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	sw := testenv.StartSWTPM(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		scheme, ref, why string
	}{
		{"tpm2", "tpm2:file=" + filepath.Join(dir, "k.pem") + "?tpm=" + sw.Transport(), ""},
		{"pkcs11", tok.URI("id=%01"), "PKCS#11 defines no key attestation"},
		{"soft", "soft:file=" + filepath.Join(dir, "s.pem"), "software key"},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			st, err := keystore.For(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Create(ctx, tc.ref, kem.DHKEMP256HKDFSHA256, nil); err != nil {
				t.Fatal(err)
			}
			k, err := st.Open(ctx, tc.ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			a, err := keystore.AttesterOf(k, tc.scheme)
			if tc.why == "" {
				if err != nil || a == nil {
					t.Fatalf("AttesterOf a TPM key: %v", err)
				}
				return
			}
			if !errors.Is(err, attest.ErrNotAttestable) || !strings.Contains(err.Error(), tc.why) || a != nil {
				t.Errorf("AttesterOf a %s key: %v, want ErrNotAttestable saying %q", tc.scheme, err, tc.why)
			}
		})
	}
}
