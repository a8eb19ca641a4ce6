package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRootsBundle: a --roots bundle larger than a key file (every TPM
// maker's roots) is read, and one over the bound is refused as what it
// is not, never as a key file.
func TestRootsBundle(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root " + strings.Repeat("x", 200)},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	one := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	dir := t.TempDir()
	big := filepath.Join(dir, "roots.pem")
	n := (200<<10)/len(one) + 1 // over 200 KiB, over the 64 KiB key-file bound
	os.WriteFile(big, bytes.Repeat(one, n), 0o644)
	certs, err := readCertsPEM(nil, big)
	if err != nil || len(certs) != n {
		t.Fatalf("readCertsPEM of %d certificates: %d, %v", n, len(certs), err)
	}
	huge := filepath.Join(dir, "huge.pem")
	os.WriteFile(huge, bytes.Repeat(one, maxCertsPEM/len(one)+1), 0o644)
	if _, err := readCertsPEM(nil, huge); err == nil || !strings.Contains(err.Error(), "not a PEM certificate bundle") {
		t.Fatalf("an oversized bundle: %v", err)
	}
}
