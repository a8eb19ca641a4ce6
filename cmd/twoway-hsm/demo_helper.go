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

	"github.com/twoway-hsm/twoway-hsm/internal/memscan"
	"github.com/twoway-hsm/twoway-hsm/internal/osthread"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
	"github.com/twoway-hsm/twoway-hsm/keystore/softstore"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/testenv/softhsm"
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
	// A process a server started as its plugin never scans memory or
	// provisions keys, whatever its environment says: the modes exist
	// for the demo alone.
	if plugins.StartedByHost() {
		return fail(errors.New("refused in a process started as a plugin by a server"))
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
	m := &keystore.Material{KEM: demoKEM, Secret: scalar}
	defer m.Wipe()
	pats := memscan.Mask(scalar)
	res := &provisionResult{Patterns: filepath.Join(req.Dir, "key.masked")}
	js, err := json.Marshal(pats)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(res.Patterns, js, 0o600); err != nil {
		return nil, err
	}
	var ref string
	switch req.Backend {
	case "soft":
		ref = softstore.Ref(filepath.Join(req.Dir, "key.pem"))
	case "pkcs11":
		module, err := softhsm.FindModule("")
		if err != nil {
			return nil, err
		}
		sh, err := newSoftHSMSetup(filepath.Join(req.Dir, "softhsm"), module, demoTokenLabel)
		if err != nil {
			return nil, err
		}
		ref, res.Env = sh.keyRef(1, "demo"), sh.env.Environ()
	case "tpm2":
		// swtpm serves one connection at a time: the plugin connects only
		// after this process has closed its own, which Import does.
		ref = tpmFileRef(filepath.Join(req.Dir, "key.tpm.pem"), req.TPM)
	default:
		return nil, fmt.Errorf("unknown backend %q", req.Backend)
	}
	st, err := keystore.For(ref)
	if err != nil {
		return nil, err
	}
	info, err := st.Import(ctx, ref, m, nil)
	if err != nil {
		return nil, err
	}
	res.Ref = info.Ref
	return res, nil
}

// tpmFileRef is the reference of a TPM key file reached through transport.
func tpmFileRef(path, transport string) string {
	return (&keyref.Ref{Scheme: "tpm2", Path: []keyref.Attr{{Name: "file", Value: path}},
		Query: []keyref.Attr{{Name: "tpm", Value: transport}}}).String()
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
