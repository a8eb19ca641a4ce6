package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lf, crlf, two, bare := write("lf", "1234\n"), write("crlf", "1234\r\n"), write("two", "1234\n\n"), write("bare", "1234")
	t.Setenv("TWOWAY_TEST_PIN", "5678")
	for src, want := range map[string]string{
		lf: "1234", "file:" + lf: "1234", "file://" + lf: "1234", crlf: "1234", bare: "1234",
		two:                   "1234\n", // one line break goes, not all
		"env:TWOWAY_TEST_PIN": "5678",
	} {
		got, err := Read(src)
		if err != nil || string(got) != want {
			t.Errorf("Read(%q) = %q, %v; want %q", src, got, err, want)
		}
	}
}

// TestReadErrors: every unreadable, empty or unknown source is an error
// wrapping ErrSource that names the source and never holds the content.
func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, []byte(strings.Repeat("S", MaxLen+1)), 0o600)
	t.Setenv("TWOWAY_TEST_EMPTY", "")
	for src, want := range map[string]string{
		"":                       "empty",
		empty:                    "is empty",
		big:                      "longer than",
		dir:                      "directory",
		filepath.Join(dir, "no"): "no such file",
		"env:":                   "names no variable",
		"env:TWOWAY_TEST_EMPTY":  "unset or empty",
		"http://example/pin":     `scheme "http"`,
		"pin-file:/x":            `scheme "pin-file"`,
		"file://remote/x":        "remote host",
		"file:":                  "names no file",
	} {
		got, err := Read(src)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), want) {
			t.Errorf("Read(%q) = %q, %v; want ErrSource saying %q", src, got, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "SSSS") {
			t.Errorf("Read(%q): the error holds the content", src)
		}
	}
}

func TestCanonical(t *testing.T) {
	wd, _ := os.Getwd()
	for in, want := range map[string]string{
		"pin":           "file:" + filepath.Join(wd, "pin"),
		"file:pin":      "file:" + filepath.Join(wd, "pin"),
		"/etc/gw.pin":   "file:/etc/gw.pin",
		"file:///etc/p": "file:/etc/p",
		"env:GW_PIN":    "env:GW_PIN",
	} {
		if got, err := Canonical(in); err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestStringRoundTrip: a file source printed and parsed again names the
// same file, whatever its name holds.
func TestStringRoundTrip(t *testing.T) {
	for _, p := range []string{"/etc/gw.pin", "/a b/c%d?e#f", "/x/\x01y", "/t/é", "//srv/a", "///x"} {
		s := Source{Kind: File, Path: p}
		got, err := Parse(s.String())
		if err != nil || got.Path != p {
			t.Errorf("Parse(%q) = %+v, %v; want path %q", s.String(), got, err, p)
		}
	}
}
