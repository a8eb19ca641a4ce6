package tpm2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/twoway-hsm/twoway-hsm/keystore/keyref"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want KeyRef
	}{
		{"tpm2:file=/etc/twoway/gw.pem", KeyRef{File: "/etc/twoway/gw.pem"}},
		{"tpm2:handle=0x81000010", KeyRef{Handle: 0x81000010}},
		{"tpm2:handle=2164260880", KeyRef{Handle: 0x81000010}},
		{"tpm2:file=/k.pem?tpm=tcp:127.0.0.1:2321&auth-source=/run/secrets/a",
			KeyRef{File: "/k.pem", TPM: "tcp:127.0.0.1:2321", AuthSource: "file:/run/secrets/a"}},
		{"tpm2:file=/k.pem?auth-source=file:///run/secrets/a", KeyRef{File: "/k.pem", AuthSource: "file:/run/secrets/a"}},
		{"tpm2:handle=0x81000010?auth-source=env:GW_AUTH&tpm=/dev/tpmrm0",
			KeyRef{Handle: 0x81000010, TPM: "/dev/tpmrm0", AuthSource: "env:GW_AUTH"}},
		{"tpm2:file=/a%3Bb%3Fc%26d%3De%25f%20g.pem?tpm=unix:/run/swtpm%20x/sock",
			KeyRef{File: "/a;b?c&d=e%f g.pem", TPM: "unix:/run/swtpm x/sock"}},
		{"tpm2:file=relative/key.pem?tpm=tcp://localhost:2321", KeyRef{File: "relative/key.pem", TPM: "tcp://localhost:2321"}},
		{"tpm2:file=/k.pem?allow-sign=true", KeyRef{File: "/k.pem", AllowSign: true}},
		{"tpm2:file=/k.pem?allow-sign=false&x-vendor=1", KeyRef{File: "/k.pem"}},
		{"tpm2:file=/k.pem;handle=0x81000011", KeyRef{File: "/k.pem", Handle: 0x81000011}},
		{"tpm2:dir=/keys?tpm=/dev/tpm0", KeyRef{Dir: "/keys", TPM: "/dev/tpm0"}},
		{"tpm2:?tpm=/dev/tpm0", KeyRef{TPM: "/dev/tpm0"}},
	} {
		got, err := ParseRef(tc.in)
		if err != nil {
			t.Errorf("ParseRef(%q): %v", tc.in, err)
			continue
		}
		if *got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, want %+v", tc.in, *got, tc.want)
		}
		// String round-trips.
		again, err := ParseRef(got.String())
		if err != nil || *again != *got {
			t.Errorf("round trip of %q via %q: %+v, %v", tc.in, got.String(), again, err)
		}
	}
}

// TestRefPrintsCanonicalAuthSource: a reference prints its auth-source as
// file:/abs/path (issue 11, bug 7: it printed a bare, possibly relative
// path), whether parsed or built.
func TestRefPrintsCanonicalAuthSource(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"tpm2:file=/k.pem?auth-source=/run/a":      "tpm2:file=/k.pem?auth-source=file:/run/a",
		"tpm2:file=/k.pem?auth-source=rel/a":       "tpm2:file=/k.pem?auth-source=file:" + filepath.Join(wd, "rel/a"),
		"tpm2:file=/k.pem?auth-source=env:GW_AUTH": "tpm2:file=/k.pem?auth-source=env:GW_AUTH",
		"tpm2:file=/k.pem?auth-source=file:///r/a": "tpm2:file=/k.pem?auth-source=file:/r/a",
		// A path beginning with "//" keeps its slashes (file:////srv/a,
		// not file://srv/a, which would name a host).
		"tpm2:file=/k.pem?auth-source=//srv/a": "tpm2:file=/k.pem?auth-source=file:////srv/a",
	} {
		r, err := ParseRef(in)
		if err != nil {
			t.Fatalf("ParseRef(%q): %v", in, err)
		}
		if got := r.String(); got != want {
			t.Errorf("%q printed as %q, want %q", in, got, want)
		}
	}
	if got := (&KeyRef{File: "/k.pem", AuthSource: "/run/a"}).String(); got != "tpm2:file=/k.pem?auth-source=file:/run/a" {
		t.Errorf("built reference printed as %q", got)
	}
}

func TestParseRefErrors(t *testing.T) {
	for in, names := range map[string]string{
		"":                                "scheme",
		"pkcs11:token=x":                  "pkcs11",
		"tpm2:file=":                      "file",
		"tpm2:file=/a;file=/b":            "file",
		"tpm2:handle=0x80000001":          "handle",
		"tpm2:handle=0x40000001":          "handle",
		"tpm2:handle=zz":                  "handle",
		"tpm2:file=/a?tpm=ftp:host":       "tpm",
		"tpm2:file=/a?tpm=tcp:nohostport": "tpm",
		"tpm2:file=/a?pin=1234":           "pin",
		"tpm2:file=/a?auth-source=":       "auth-source",
		"tpm2:file=/a?auth-source=http:x": "auth-source",
		"tpm2:file=/a?auth-sorce=/p":      "auth-sorce",
		"tpm2:file=/a?allow-sign=yes":     "allow-sign",
		"tpm2:file=/a?tpm":                "tpm",
		"tpm2:id=1":                       "id",
		"tpm2:file=/a%zz":                 "file",
		"tpm2:dir=/keys;file=/a":          "dir",
		"tpm2:file=/a;tpm=/dev/tpm0":      "tpm",
		"tpm2:file=/a?handle=0x81000010":  "handle",
	} {
		_, err := ParseRef(in)
		if !errors.Is(err, ErrInvalidKeyRef) {
			t.Errorf("ParseRef(%q) err = %v, want ErrInvalidKeyRef", in, err)
			continue
		}
		if !strings.Contains(err.Error(), names) {
			t.Errorf("ParseRef(%q) = %v: does not name %q", in, err, names)
		}
	}
	// Grammar errors come from the one reference grammar.
	if _, err := ParseRef("tpm2:file=/a?auth-sorce=/p"); !errors.Is(err, keyref.ErrInvalid) {
		t.Errorf("unknown attribute: %v, want keyref.ErrInvalid", err)
	}
	// OpenKey takes exactly one of file= and handle=.
	for _, in := range []string{"tpm2:nope=1", "tpm2:dir=/keys", "tpm2:?tpm=/dev/tpm0", "tpm2:file=/a;handle=0x81000010"} {
		if _, err := OpenKey(context.Background(), in); !errors.Is(err, ErrInvalidKeyRef) {
			t.Errorf("OpenKey(%q) = %v, want ErrInvalidKeyRef", in, err)
		}
	}
}

func TestParseTransport(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "/dev/tpmrm0",
		"/dev/tpm0":               "/dev/tpm0",
		"device:/dev/tpmrm0":      "/dev/tpmrm0",
		"tcp:127.0.0.1:2321":      "tcp:127.0.0.1:2321",
		"tcp://127.0.0.1:2321":    "tcp:127.0.0.1:2321",
		"tcp://[::1]:2321/":       "tcp:[::1]:2321",
		"unix:/run/swtpm.sock":    "unix:/run/swtpm.sock",
		"unix:///run/swtpm.sock":  "unix:/run/swtpm.sock",
		"tcp:localhost:2321":      "tcp:localhost:2321",
		"unix:relative/dir/sock1": "unix:relative/dir/sock1",
	} {
		s, err := parseTransport(in)
		if err != nil || s.String() != want {
			t.Errorf("parseTransport(%q) = %q, %v; want %q", in, s.String(), err, want)
		}
	}
	for _, in := range []string{"tcp:", "tcp:host", "unix:", "device:tpm0", "mssim:host:2321", "tpmrm0"} {
		if _, err := parseTransport(in); err == nil {
			t.Errorf("parseTransport(%q) succeeded", in)
		}
	}
	if !(transportSpec{kindDevice, "/dev/tpmrm0"}).hasResourceManager() ||
		(transportSpec{kindDevice, "/dev/tpm0"}).hasResourceManager() ||
		(transportSpec{kindTCP, "h:1"}).hasResourceManager() {
		t.Error("hasResourceManager")
	}
}

// TestReadResponseFraming: a stream transport reads the 10-byte header,
// then exactly the rest announced by the size field, however the bytes
// arrive, and leaves following bytes alone; with and without the probe's
// split read of the tag.
func TestReadResponseFraming(t *testing.T) {
	resp := []byte{0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	next := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01}
	stream := append(bytes.Clone(resp), next...)
	for _, probe := range []bool{true, false} {
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(stream),
			"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
			"half":     iotest.HalfReader(bytes.NewReader(stream)),
		} {
			got, err := readResponse(r, probe)
			if err != nil || !bytes.Equal(got, resp) {
				t.Errorf("%s, probe %v: first = %x, %v", name, probe, got, err)
			}
			got, err = readResponse(r, false)
			if err != nil || !bytes.Equal(got, next) {
				t.Errorf("%s, probe %v: second = %x, %v", name, probe, got, err)
			}
			if _, err := readResponse(r, false); !isTransportError(err) {
				t.Errorf("%s, probe %v: at EOF: %v", name, probe, err)
			}
		}
		for name, b := range map[string][]byte{
			"truncated body":   resp[:15],
			"truncated header": resp[:5],
			"size too small":   {0x80, 0x01, 0, 0, 0, 4, 0, 0, 0, 0},
			"size too large":   {0x80, 0x01, 0x7f, 0, 0, 0, 0, 0, 0, 0},
			"not a TPM":        {0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
		} {
			if _, err := readResponse(bytes.NewReader(b), probe); !isTransportError(err) {
				t.Errorf("%s, probe %v: err = %v, want a transport error", name, probe, err)
			}
		}
	}
	// The probe tells a 4-byte answer (swtpm's control channel) from a
	// TPM's without waiting for ten bytes.
	var re *responseError
	if _, err := readResponse(bytes.NewReader([]byte{0, 0, 0, 0x0a}), true); !errors.As(err, &re) || !bytes.Equal(re.got, []byte{0, 0, 0, 0x0a}) {
		t.Errorf("probe of a 4-byte answer: %v", err)
	}
}

// TestReadResponseReads: after the probe, a response takes two reads
// (header, body), not three.
func TestReadResponseReads(t *testing.T) {
	resp := []byte{0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	for probe, want := range map[bool]int{true: 3, false: 2} {
		r := &countingReader{r: bytes.NewReader(resp)}
		if _, err := readResponse(r, probe); err != nil {
			t.Fatal(err)
		}
		if r.n != want {
			t.Errorf("probe %v: %d reads, want %d", probe, r.n, want)
		}
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.n++
	return c.r.Read(p)
}

func TestHandle(t *testing.T) {
	h, err := ParseHandle("0x81000010")
	if err != nil || h != 0x81000010 || h.String() != "0x81000010" || !h.IsPersistent() {
		t.Fatalf("ParseHandle: %v %v", h, err)
	}
	if Handle(0x81800000).IsPersistent() || Handle(0x80000000).IsPersistent() {
		t.Fatal("IsPersistent")
	}
}
