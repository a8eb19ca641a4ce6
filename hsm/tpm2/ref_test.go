package tpm2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestParseKeyRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want KeyRef
	}{
		{"tpm2:file=/etc/twoway/gw.pem", KeyRef{File: "/etc/twoway/gw.pem"}},
		{"tpm2:handle=0x81000010", KeyRef{Handle: 0x81000010}},
		{"tpm2:handle=2164260880", KeyRef{Handle: 0x81000010}},
		{"tpm2:file=/k.pem?tpm=tcp:127.0.0.1:2321&auth-source=/run/secrets/a",
			KeyRef{File: "/k.pem", TPM: "tcp:127.0.0.1:2321", AuthSource: "/run/secrets/a"}},
		{"tpm2:handle=0x81000010?auth-source=env:GW_AUTH&tpm=/dev/tpmrm0",
			KeyRef{Handle: 0x81000010, TPM: "/dev/tpmrm0", AuthSource: "env:GW_AUTH"}},
		{"tpm2:file=/a%3Bb%3Fc%26d%3De%25f%20g.pem?tpm=unix:/run/swtpm%20x/sock",
			KeyRef{File: "/a;b?c&d=e%f g.pem", TPM: "unix:/run/swtpm x/sock"}},
		{"tpm2:file=relative/key.pem?tpm=tcp://localhost:2321", KeyRef{File: "relative/key.pem", TPM: "tcp://localhost:2321"}},
	} {
		got, err := ParseKeyRef(tc.in)
		if err != nil {
			t.Errorf("ParseKeyRef(%q): %v", tc.in, err)
			continue
		}
		if *got != tc.want {
			t.Errorf("ParseKeyRef(%q) = %+v, want %+v", tc.in, *got, tc.want)
		}
		// String round-trips.
		again, err := ParseKeyRef(got.String())
		if err != nil || *again != *got {
			t.Errorf("round trip of %q via %q: %+v, %v", tc.in, got.String(), again, err)
		}
	}
}

func TestParseKeyRefErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"pkcs11:token=x",
		"tpm2:",
		"tpm2:file=",
		"tpm2:file=/a;handle=0x81000010",
		"tpm2:file=/a;file=/b",
		"tpm2:handle=0x80000001",
		"tpm2:handle=0x40000001",
		"tpm2:handle=zz",
		"tpm2:file=/a?tpm=ftp:host",
		"tpm2:file=/a?tpm=tcp:nohostport",
		"tpm2:file=/a?pin=1234",
		"tpm2:file=/a?auth-source=",
		"tpm2:file=/a?tpm",
		"tpm2:id=1",
		"tpm2:file=/a%zz",
		"tpm2:dir=/keys", // ParseRef forms that name no single key
		"tpm2:?tpm=/dev/tpm0",
		"tpm2:dir=/keys;file=/a",
	} {
		if _, err := ParseKeyRef(in); !errors.Is(err, ErrInvalidKeyRef) {
			t.Errorf("ParseKeyRef(%q) err = %v, want ErrInvalidKeyRef", in, err)
		}
	}
	if _, err := OpenKey(context.Background(), "tpm2:nope=1"); !errors.Is(err, ErrInvalidKeyRef) {
		t.Errorf("OpenKey(bad ref) = %v", err)
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
// arrive, and leaves following bytes alone.
func TestReadResponseFraming(t *testing.T) {
	resp := []byte{0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	next := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01}
	stream := append(bytes.Clone(resp), next...)
	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
	} {
		got, err := readResponse(r)
		if err != nil || !bytes.Equal(got, resp) {
			t.Errorf("%s: first = %x, %v", name, got, err)
		}
		got, err = readResponse(r)
		if err != nil || !bytes.Equal(got, next) {
			t.Errorf("%s: second = %x, %v", name, got, err)
		}
		if _, err := readResponse(r); !isTransportError(err) {
			t.Errorf("%s: at EOF: %v", name, err)
		}
	}
	for name, b := range map[string][]byte{
		"truncated body":   resp[:15],
		"truncated header": resp[:5],
		"size too small":   {0x80, 0x01, 0, 0, 0, 4, 0, 0, 0, 0},
		"size too large":   {0x80, 0x01, 0x7f, 0, 0, 0, 0, 0, 0, 0},
	} {
		if _, err := readResponse(bytes.NewReader(b)); !isTransportError(err) {
			t.Errorf("%s: err = %v, want a transport error", name, err)
		}
	}
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
