package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
)

// keyView describes one key, for text and JSON output: a key store's
// KeyInfo with its KEM named. The backend's details go under a field named
// for the backend ("pkcs11", "tpm2", "soft").
type keyView struct {
	// Ref is the reference to give a plugin or a server (no secrets).
	Ref     string `json:"ref"`
	Backend string `json:"backend"`
	// KEM is the short name (p256, x25519, ...), KEMID the HPKE KEM
	// identifier and KEMName its registry name; empty or 0 when the key
	// serves no KEM.
	KEM       string `json:"kem,omitempty"`
	KEMID     uint16 `json:"kem_id,omitempty"`
	KEMName   string `json:"kem_name,omitempty"`
	PublicKey string `json:"public_key,omitempty"` // hex, HPKE's SerializePublicKey
	// Usable says whether a plugin can serve the key; Problem says why not.
	Usable     bool     `json:"usable"`
	Problem    string   `json:"problem,omitempty"`
	Name       string   `json:"name"`
	Attributes []string `json:"attributes"`

	fields  []keystore.Field
	details any
}

// MarshalJSON puts the backend's details under the backend's name.
func (v *keyView) MarshalJSON() ([]byte, error) {
	type plain keyView
	return withDetails((*plain)(v), v.Backend, v.details)
}

// withDetails marshals v, an object, with details added under the field
// name.
func withDetails(v any, name string, details any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || details == nil || name == "" {
		return b, err
	}
	d, err := json.Marshal(details)
	if err != nil {
		return nil, err
	}
	k, _ := json.Marshal(name)
	out := append(b[:len(b)-1:len(b)-1], ',')
	out = append(out, k...)
	out = append(out, ':')
	out = append(out, d...)
	return append(out, '}'), nil
}

// viewOf describes a key store's key.
func viewOf(i *keystore.KeyInfo) *keyView {
	if i == nil {
		return nil
	}
	v := &keyView{Ref: i.Ref, Backend: i.Backend, Usable: i.Usable, Problem: i.Problem, Name: i.Name,
		Attributes: append([]string{}, i.Attributes...), fields: i.Fields, details: i.Details}
	v.setKEM(i.KEM, i.PublicKey)
	return v
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

// listView is the output of keys list.
type listView struct {
	Backend string     `json:"backend"`
	Title   string     `json:"title"`
	Keys    []*keyView `json:"keys"`
	details any
}

// MarshalJSON puts the container's details under the backend's name.
func (l *listView) MarshalJSON() ([]byte, error) {
	type plain listView
	return withDetails((*plain)(l), l.Backend, l.details)
}

func listViewOf(l *keystore.Listing) *listView {
	v := &listView{Backend: l.Backend, Title: l.Title, Keys: []*keyView{}, details: l.Details}
	for _, k := range l.Keys {
		v.Keys = append(v.Keys, viewOf(k))
	}
	return v
}

// deleteView is the output of keys delete.
type deleteView struct {
	// Deleted lists what was removed: "pkcs11 key ...", "key file ...",
	// "persistent handle ...".
	Deleted []string `json:"deleted"`
	Key     *keyView `json:"key"`
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
	for _, f := range v.fields {
		line(f.Name, "%s", f.Value)
	}
	tw.Flush()
}

// printList writes a table of keys, then the references of the usable
// ones.
func printList(w io.Writer, l *listView) {
	fmt.Fprintln(w, l.Title)
	if len(l.Keys) == 0 {
		fmt.Fprintln(w, "no keys")
		return
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintln(tw, "KEY\tKEM\tUSABLE\tATTRIBUTES\tPUBLIC KEY")
	for _, k := range l.Keys {
		kemText := k.KEM
		if kemText == "" {
			kemText = "-"
		}
		usable := "yes"
		if !k.Usable {
			usable = "no: " + k.Problem
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orNone(k.Name), kemText, usable, orNone(strings.Join(k.Attributes, ",")), shortHex(k.PublicKey))
	}
	tw.Flush()
	header := false
	for _, k := range l.Keys {
		if !k.Usable {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nreferences of the usable keys:")
			header = true
		}
		fmt.Fprintf(w, "  %s\n", k.Ref)
	}
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
