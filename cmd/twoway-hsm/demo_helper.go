package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twoway-hsm/twoway-hsm/hsm/pkcs11"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
	"github.com/twoway-hsm/twoway-hsm/hsm/tpm2"
	"github.com/twoway-hsm/twoway-hsm/internal/memscan"
	"github.com/twoway-hsm/twoway-hsm/internal/osthread"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// The demo's helpers: short-lived child processes (this binary, re-executed
// as `demo` with demoHelperEnv set; the mode is not listed anywhere a user
// looks) that do what the demo (server) process must not do itself.
//
//   - provision makes the demo's key for a backend: it generates the key,
//     stores it (a key file, a SoftHSM token, a TPM key file) and writes
//     only a masked copy (memscan.Pattern) for the scanner. So the key
//     bytes exist only in that child, in the store, and in the plugin that
//     serves the key; never in the demo process.
//   - scan searches a process's memory (the demo's) for the masked key.
//     It runs in a process of its own because the scanner reads whole
//     address spaces into its buffer: a process cannot meaningfully scan
//     itself.
//
// Each reads a JSON request on stdin and writes a JSON answer on stdout;
// errors go to stderr, with exit status 1.

// demoHelperEnv selects a helper mode of `twoway-hsm demo`.
const demoHelperEnv = "TWOWAY_HSM_DEMO_HELPER"

// demoKEM is the KEM of the demo's keys: P-256 is the curve every backend
// here (a software key, SoftHSM, a TPM) has.
const demoKEM = kem.DHKEMP256HKDFSHA256

// demoTokenLabel is the label of the demo's SoftHSM token.
const demoTokenLabel = "twoway-demo"

// provisionRequest asks the provision helper for a key.
type provisionRequest struct {
	Backend string `json:"backend"` // soft, pkcs11 or tpm2
	Dir     string `json:"dir"`     // a private directory for the key's files
	TPM     string `json:"tpm"`     // the TPM transport, for tpm2
}

// provisionResult says how to reach the key. It holds no secret.
type provisionResult struct {
	Ref      string   `json:"ref"`      // the key reference for the plugin
	Env      []string `json:"env"`      // the plugin's environment
	Patterns string   `json:"patterns"` // the file of masked patterns
}

// scanRequest asks the scan helper to scan a process.
type scanRequest struct {
	PID      int    `json:"pid"`
	Patterns string `json:"patterns"`
}

// scanResult is what the scan helper found.
type scanResult struct {
	Hits    int   `json:"hits"`
	Regions int   `json:"regions"`
	Bytes   int64 `json:"bytes"`
}

// runDemoHelper runs the helper mode named by demoHelperEnv.
func runDemoHelper(ctx context.Context, env *environment, mode string) int {
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "twoway-hsm demo %s: %v\n", mode, err)
		return exitFailure
	}
	in, err := io.ReadAll(env.stdin)
	if err != nil {
		return fail(err)
	}
	var out any
	switch mode {
	case "provision":
		var req provisionRequest
		if err := json.Unmarshal(in, &req); err != nil {
			return fail(err)
		}
		out, err = provisionDemoKey(ctx, req)
	case "scan":
		var req scanRequest
		if err := json.Unmarshal(in, &req); err != nil {
			return fail(err)
		}
		out, err = scanForDemoKey(req)
	default:
		err = fmt.Errorf("unknown helper mode (this mode is internal to the demo)")
	}
	if err != nil {
		return fail(err)
	}
	if err := json.NewEncoder(env.stdout).Encode(out); err != nil {
		return fail(err)
	}
	return exitOK
}

// provisionDemoKey makes a P-256 key in the backend and writes its masked
// patterns. It runs in the provision helper process.
func provisionDemoKey(ctx context.Context, req provisionRequest) (*provisionResult, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	scalar := priv.Bytes()
	pats := memscan.Mask(scalar)
	res := &provisionResult{Patterns: filepath.Join(req.Dir, "key.masked")}
	js, err := json.Marshal(pats)
	if err != nil {
		clear(scalar)
		return nil, err
	}
	if err := os.WriteFile(res.Patterns, js, 0o600); err != nil {
		clear(scalar)
		return nil, err
	}
	switch req.Backend {
	case "soft":
		k, err := kem.NewPrivateKey(demoKEM, scalar)
		clear(scalar)
		if err != nil {
			return nil, err
		}
		pemBytes, err := kem.MarshalPrivateKeyPEM(k)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(req.Dir, "key.pem")
		err = os.WriteFile(path, pemBytes, 0o600)
		clear(pemBytes)
		if err != nil {
			return nil, err
		}
		res.Ref = softFileRef(path)
	case "pkcs11":
		clear(scalar)
		ref, env, err := provisionSoftHSM(ctx, req.Dir, priv)
		if err != nil {
			return nil, err
		}
		res.Ref, res.Env = ref, env
	case "tpm2":
		clear(scalar)
		path := filepath.Join(req.Dir, "key.tpm.pem")
		if err := provisionTPM(ctx, req.TPM, path, priv); err != nil {
			return nil, err
		}
		res.Ref = (&tpm2.KeyRef{File: path, TPM: req.TPM}).String()
	default:
		clear(scalar)
		return nil, fmt.Errorf("unknown backend %q", req.Backend)
	}
	return res, nil
}

// provisionSoftHSM makes a SoftHSM configuration and token in dir, with
// random PINs (the user PIN in a 0600 file the plugin reads), and imports
// priv into it. It activates the configuration in this (helper) process.
func provisionSoftHSM(ctx context.Context, dir string, priv *ecdh.PrivateKey) (ref string, env []string, err error) {
	module, err := softhsm.FindModule("")
	if err != nil {
		return "", nil, err
	}
	sh, err := newSoftHSMSetup(filepath.Join(dir, "softhsm"), module, demoTokenLabel)
	if err != nil {
		return "", nil, err
	}
	tok, err := sh.open(ctx)
	if err != nil {
		return "", nil, err
	}
	defer tok.Close()
	k, err := tok.ImportKey(ctx, priv, pkcs11.KeyRef{ID: []byte{1}, Label: "demo"})
	if err != nil {
		return "", nil, err
	}
	k.Close()
	return sh.uri(pkcs11.KeyRef{ID: []byte{1}}), sh.env.Environ(), nil
}

// provisionTPM imports priv into the TPM and writes its key file.
func provisionTPM(ctx context.Context, transport, path string, priv *ecdh.PrivateKey) error {
	t, err := tpm2.Open(ctx, transport)
	if err != nil {
		return err
	}
	// swtpm serves one connection at a time: the plugin connects only
	// after this process has closed its own.
	defer t.Close()
	k, err := t.ImportKey(ctx, priv)
	if err != nil {
		return err
	}
	defer k.Close()
	return k.WriteKeyFile(path)
}

// readPatterns reads a file of masked patterns.
func readPatterns(path string) ([]memscan.Pattern, error) {
	js, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pats []memscan.Pattern
	if err := json.Unmarshal(js, &pats); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(pats) == 0 {
		return nil, fmt.Errorf("%s: no patterns", path)
	}
	return pats, nil
}

// scanForDemoKey scans a process for the key of a pattern file. It runs in
// the scan helper process.
func scanForDemoKey(req scanRequest) (*scanResult, error) {
	pats, err := readPatterns(req.Patterns)
	if err != nil {
		return nil, err
	}
	res, err := memscan.ScanProcess(req.PID, pats)
	if err != nil {
		return nil, err
	}
	return &scanResult{Hits: res.Total(), Regions: res.Regions, Bytes: res.Bytes}, nil
}

// helperTimeout bounds a helper process.
const helperTimeout = time.Minute

// callDemoHelper runs a helper mode of this binary with req on its stdin
// and decodes its answer into out. started, if not nil, is called with the
// helper's pid once it runs and before it reads its request (the scan
// helper needs the demo's permission to read its memory).
func callDemoHelper(ctx context.Context, mode string, req, out any, started func(pid int)) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	js, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, helperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "demo")
	cmd.Env = append(os.Environ(), demoHelperEnv+"="+mode)
	cmd.SysProcAttr = helperSysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Started from a thread that lives as long as the process, so that the
	// parent-death signal fires only when the demo dies.
	if err := osthread.Start(cmd); err != nil {
		return err
	}
	if started != nil {
		started(cmd.Process.Pid)
	}
	_, werr := stdin.Write(js)
	stdin.Close()
	err = cmd.Wait()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return errors.New(msg)
		}
		return err
	}
	if werr != nil {
		return werr
	}
	return json.Unmarshal(stdout.Bytes(), out)
}
