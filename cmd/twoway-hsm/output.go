package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// softWarning is printed on stderr whenever a soft key is created or used.
const softWarning = "warning: development only: the private key is in a file, not in hardware; anyone who can read the file has the key"

// keyView describes one key, for text and JSON output. The JSON field
// names are stable.
type keyView struct {
	// Ref is the reference to give a plugin or a server (no secrets).
	Ref     string `json:"ref"`
	Backend string `json:"backend"` // pkcs11, tpm2 or soft
	// KEM is the short name (p256, x25519, ...), KEMID the HPKE KEM
	// identifier and KEMName its registry name; empty or 0 when the key
	// serves no KEM.
	KEM       string `json:"kem,omitempty"`
	KEMID     uint16 `json:"kem_id,omitempty"`
	KEMName   string `json:"kem_name,omitempty"`
	PublicKey string `json:"public_key,omitempty"` // hex, HPKE's SerializePublicKey
	// Usable says whether a plugin can serve the key; Problem says why not.
	Usable  bool        `json:"usable"`
	Problem string      `json:"problem,omitempty"`
	PKCS11  *pkcs11View `json:"pkcs11,omitempty"`
	TPM2    *tpm2View   `json:"tpm2,omitempty"`
	Soft    *softView   `json:"soft,omitempty"`
}

type pkcs11View struct {
	Token      string       `json:"token"`
	Serial     string       `json:"serial"`
	ModulePath string       `json:"module_path"`
	ID         string       `json:"id"` // CKA_ID, hex
	Label      string       `json:"label"`
	KeyType    string       `json:"key_type"`
	Curve      string       `json:"curve,omitempty"`
	Attributes pkcs11Attrib `json:"attributes"`
}

type pkcs11Attrib struct {
	Sensitive        bool `json:"sensitive"`
	Extractable      bool `json:"extractable"`
	Derive           bool `json:"derive"`
	Token            bool `json:"token"`
	Private          bool `json:"private"`
	AlwaysSensitive  bool `json:"always_sensitive"`
	NeverExtractable bool `json:"never_extractable"`
	Local            bool `json:"local"`
}

type tpm2View struct {
	Transport string `json:"transport"`
	File      string `json:"file,omitempty"`
	Handle    string `json:"handle,omitempty"` // persistent handle, 0x81......
	// HandleRef is the reference by persistent handle, when the key has
	// both a file and a handle.
	HandleRef string `json:"handle_ref,omitempty"`
}

type softView struct {
	File string `json:"file"`
}

// setKEM fills in the KEM fields and the public key.
func (v *keyView) setKEM(id kem.ID, pub []byte) {
	if id != 0 {
		v.KEM, v.KEMID, v.KEMName = kemShort(id), uint16(id), id.String()
	}
	if len(pub) > 0 {
		v.PublicKey = hex.EncodeToString(pub)
	}
}

// writeJSON writes one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printKey writes a key as "name  value" lines.
func printKey(w io.Writer, v *keyView) {
	tw := newTable(w)
	line := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	line("reference", "%s", v.Ref)
	line("backend", "%s", v.Backend)
	if v.KEMID != 0 {
		line("kem", "%s (%s, 0x%04x)", v.KEM, v.KEMName, v.KEMID)
	} else {
		line("kem", "none")
	}
	if v.PublicKey != "" {
		line("public key", "%s", v.PublicKey)
	}
	if v.Usable {
		line("usable", "yes")
	} else {
		line("usable", "no: %s", v.Problem)
	}
	if p := v.PKCS11; p != nil {
		line("token", "%s (serial %s)", p.Token, p.Serial)
		line("module", "%s", p.ModulePath)
		line("id", "%s", orNone(p.ID))
		line("label", "%s", orNone(p.Label))
		kt := p.KeyType
		if p.Curve != "" {
			kt += " (" + p.Curve + ")"
		}
		line("key type", "%s", kt)
		a := p.Attributes
		line("attributes", "sensitive=%t extractable=%t derive=%t token=%t private=%t", a.Sensitive, a.Extractable, a.Derive, a.Token, a.Private)
		line("", "always-sensitive=%t never-extractable=%t local=%t", a.AlwaysSensitive, a.NeverExtractable, a.Local)
	}
	if t := v.TPM2; t != nil {
		line("tpm", "%s", t.Transport)
		if t.File != "" {
			line("key file", "%s", t.File)
		}
		if t.Handle != "" {
			line("handle", "%s (persistent)", t.Handle)
		}
		if t.HandleRef != "" {
			line("by handle", "%s", t.HandleRef)
		}
	}
	if s := v.Soft; s != nil {
		line("key file", "%s (development only)", s.File)
	}
	tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// shortHex abbreviates a hex public key for tables.
func shortHex(h string) string {
	if len(h) <= 20 {
		return h
	}
	return h[:16] + "…"
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// stdinIsTerminal reports whether the command can ask the operator.
func stdinIsTerminal(env *environment) bool {
	return env.stdinFd >= 0 && term.IsTerminal(env.stdinFd)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// newTable returns a writer that aligns tab-separated columns.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// absPath returns path made absolute, or path itself if that fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// millis converts a duration to milliseconds, rounded to microseconds, for
// JSON.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3
}

// fmtDuration prints a latency with a precision that suits it.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}
