package tpm2store

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	keyfile "github.com/foxboron/go-tpm-keyfiles"

	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// toolsInstall is the apt-get line for the independent TPM tools the
// interoperability tests run.
const toolsInstall = "apt-get install -y tpm2-tools tpm2-openssl"

// tools is the environment in which openssl's tpm2 provider and tpm2-tools
// reach sw (through libtss2-tcti-swtpm, which both pull in). It skips the
// test when they are missing, or fails it under TWOWAY_HSM_REQUIRED=1.
func tools(t *testing.T, sw *testenv.SWTPM) []string {
	t.Helper()
	for _, bin := range []string{"openssl", "tpm2_createprimary", "tpm2_evictcontrol", "tpm2_flushcontext", "tpm2_create", "tpm2_encodeobject"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Unavailable(t, bin+" is not installed: "+toolsInstall)
		}
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(sw.Transport(), "tcp:"))
	if err != nil {
		t.Fatalf("swtpm transport %s: want tcp:", sw.Transport())
	}
	tcti := "swtpm:host=" + host + ",port=" + port
	env := append(os.Environ(), "TPM2OPENSSL_TCTI="+tcti, "TPM2TOOLS_TCTI="+tcti)
	// The provider connects to the TPM when it loads.
	cmd := exec.Command("openssl", "list", "-providers", "-provider", "tpm2")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Unavailable(t, "openssl's tpm2 provider does not load (is tpm2-openssl installed?): "+toolsInstall+"\n"+string(out))
	}
	return env
}

// run runs a tool in env and returns its output; swtpm serves one
// connection at a time, so the caller has closed every key and TPM first.
func run(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// writePeer writes a fresh software P-256 public key as a PKIX PEM file.
func writePeer(t *testing.T, dir string) (*ecdh.PrivateKey, string) {
	t.Helper()
	peer, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(peer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "peer.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return peer, path
}

// opensslDerive is openssl's ECDH of the TPM key file with the peer.
func opensslDerive(t *testing.T, env []string, dir, keyFile, peerFile string) []byte {
	t.Helper()
	out := filepath.Join(dir, "z.bin")
	os.Remove(out)
	run(t, env, "openssl", "pkeyutl", "-derive", "-provider", "tpm2", "-provider", "default",
		"-inkey", keyFile, "-peerkey", peerFile, "-out", out)
	z, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ourECDH is the store's ECDH of ref with the peer.
func ourECDH(t *testing.T, ref string, peer *ecdh.PrivateKey) []byte {
	t.Helper()
	k, err := Store{}.Open(testCtx(t), ref, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", ref, err)
	}
	defer k.Close()
	z, err := k.(kem.Exchanger).ECDHContext(testCtx(t), peer.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// TestOpenSSLReadsOurKeyFiles (issue 11, bug 6): a key file the store
// creates is read by openssl's tpm2 provider (tpm2-openssl 1.1.1 refused
// the [4] description it had), which gives its public key and the same
// shared secret as the store's ECDH and the peer's.
func TestOpenSSLReadsOurKeyFiles(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	env := tools(t, sw)
	dir := t.TempDir()
	file := filepath.Join(dir, "gw.pem")
	ref := "tpm2:file=" + file + "?tpm=" + sw.Transport()
	ci, err := Store{}.Create(testCtx(t), ref, kem.DHKEMP256HKDFSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Create has closed its connection: openssl may have swtpm's.
	pubPEM := run(t, env, "openssl", "pkey", "-provider", "tpm2", "-provider", "default", "-in", file, "-pubout")
	blk, _ := pem.Decode(pubPEM)
	if blk == nil {
		t.Fatalf("openssl pkey -pubout printed %s", pubPEM)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := pub.(interface {
		ECDH() (*ecdh.PublicKey, error)
	}).ECDH()
	if err != nil || !bytes.Equal(ep.Bytes(), ci.PublicKey) {
		t.Fatalf("openssl's public key %x, ours %x (%v)", ep.Bytes(), ci.PublicKey, err)
	}
	peer, peerFile := writePeer(t, dir)
	theirs := opensslDerive(t, env, dir, file, peerFile)
	ours := ourECDH(t, ref, peer)
	want, _ := peer.ECDH(ep)
	if !bytes.Equal(theirs, want) || !bytes.Equal(ours, want) {
		t.Fatalf("shared secrets differ:\n openssl %x\n store   %x\n peer    %x", theirs, ours, want)
	}
}

// TestForeignSignKeys (issue 11, bug 6): EC keys made by tpm2-openssl and
// by tpm2_create (sign|decrypt) are refused, with an error naming
// allow-sign, and with allow-sign=true open and give the same shared
// secret as openssl's derive.
func TestForeignSignKeys(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	env := tools(t, sw)
	ctx := testCtx(t)
	dir := t.TempDir()
	peer, peerFile := writePeer(t, dir)

	osslKey := filepath.Join(dir, "openssl.pem")
	run(t, env, "openssl", "genpkey", "-provider", "tpm2", "-algorithm", "EC", "-pkeyopt", "group:P-256", "-out", osslKey)

	// tpm2-tools: a key under a persistent primary, as tpm2-tools users
	// make them, encoded as a TSS2 key file.
	prim := filepath.Join(dir, "prim.ctx")
	run(t, env, "tpm2_createprimary", "-Q", "-C", "o", "-G", "ecc", "-c", prim)
	run(t, env, "tpm2_evictcontrol", "-Q", "-C", "o", "-c", prim, "0x81000001")
	// Without a resource manager, what tpm2-tools load stays loaded.
	run(t, env, "tpm2_flushcontext", "-t")
	pubF, privF := filepath.Join(dir, "k.pub"), filepath.Join(dir, "k.priv")
	run(t, env, "tpm2_create", "-Q", "-C", "0x81000001", "-G", "ecc256", "-u", pubF, "-r", privF)
	toolsKey := filepath.Join(dir, "tools.pem")
	run(t, env, "tpm2_flushcontext", "-t")
	run(t, env, "tpm2_encodeobject", "-Q", "-C", "0x81000001", "-u", pubF, "-r", privF, "-o", toolsKey)
	if kf, err := keyfile.Decode(readFile(t, toolsKey)); err != nil {
		t.Fatal(err)
	} else if !kf.EmptyAuth {
		// tpm2-tools 5.4 (Debian 12) writes emptyAuth FALSE for a key
		// without auth value unless given -p, whose meaning it inverts.
		os.Remove(toolsKey)
		run(t, env, "tpm2_encodeobject", "-Q", "-C", "0x81000001", "-u", pubF, "-r", privF, "-o", toolsKey, "-p")
	}
	run(t, env, "tpm2_flushcontext", "-t")

	for name, file := range map[string]string{"tpm2-openssl": osslKey, "tpm2_create": toolsKey} {
		t.Run(name, func(t *testing.T) {
			ref := "tpm2:file=" + file + "?tpm=" + sw.Transport()
			_, err := Store{}.Open(ctx, ref, nil)
			if !errors.Is(err, keystore.ErrUnsupported) || !errors.Is(err, tpm2.ErrUnsupportedKey) || !strings.Contains(err.Error(), "allow-sign=true") {
				t.Fatalf("Open without allow-sign = %v, want ErrUnsupported naming allow-sign=true", err)
			}
			si, err := Store{}.Show(ctx, ref, nil)
			if err != nil || si.Usable || !strings.Contains(si.Problem, "allow-sign=true") {
				t.Fatalf("Show without allow-sign = %+v, %v", si, err)
			}
			allowed := ref + "&allow-sign=true"
			si, err = Store{}.Show(ctx, allowed, nil)
			if err != nil || !si.Usable || si.Ref != allowed || !si.Details.(*Details).Sign {
				t.Fatalf("Show with allow-sign = %+v, %v", si, err)
			}
			ours := ourECDH(t, allowed, peer)
			theirs := opensslDerive(t, env, dir, file, peerFile)
			if !bytes.Equal(ours, theirs) {
				t.Fatalf("shared secrets differ:\n store   %x\n openssl %x", ours, theirs)
			}
		})
	}
}
