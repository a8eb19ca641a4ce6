package tpm2

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// DefaultTransport is the transport used when none is given: the Linux
// kernel's TPM resource manager.
const DefaultTransport = "/dev/tpmrm0"

const (
	headerSize = 10 // tag (2) | size (4) | code (4), for commands and responses
	// maxResponseSize bounds a response; TPMs report 4096 or less in
	// TPM_PT_MAX_RESPONSE_SIZE.
	maxResponseSize = 64 << 10
	dialTimeout     = 10 * time.Second
)

type transportKind int

const (
	kindDevice transportKind = iota
	kindTCP
	kindUnix
)

// transportSpec is a parsed transport string.
type transportSpec struct {
	kind transportKind
	addr string // device path, host:port or socket path
}

// parseTransport parses a transport string:
//
//	/dev/tpmrm0, /dev/tpm0, device:/path   a TPM character device
//	tcp:host:port, tcp://host:port        swtpm --server type=tcp (data port)
//	unix:/path, unix:///path              swtpm --server type=unixio
//
// The empty string means [DefaultTransport].
func parseTransport(s string) (transportSpec, error) {
	switch {
	case s == "":
		return transportSpec{kindDevice, DefaultTransport}, nil
	case strings.HasPrefix(s, "/"):
		return transportSpec{kindDevice, s}, nil
	case strings.HasPrefix(s, "device:"):
		p := strings.TrimPrefix(s, "device:")
		if !strings.HasPrefix(p, "/") {
			return transportSpec{}, fmt.Errorf("tpm2: transport %q: device path must be absolute", s)
		}
		return transportSpec{kindDevice, p}, nil
	case strings.HasPrefix(s, "tcp:"):
		a := strings.TrimPrefix(strings.TrimPrefix(s, "tcp:"), "//")
		a = strings.TrimSuffix(a, "/")
		host, port, err := net.SplitHostPort(a)
		if err != nil || port == "" {
			return transportSpec{}, fmt.Errorf("tpm2: transport %q: want tcp:host:port", s)
		}
		return transportSpec{kindTCP, net.JoinHostPort(host, port)}, nil
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(strings.TrimPrefix(s, "unix:"), "//")
		if p == "" {
			return transportSpec{}, fmt.Errorf("tpm2: transport %q: want unix:/path/to/socket", s)
		}
		return transportSpec{kindUnix, p}, nil
	}
	return transportSpec{}, fmt.Errorf("tpm2: transport %q: want /dev/tpmrm0, tcp:host:port or unix:/path", s)
}

// String returns the canonical form of the transport string.
func (s transportSpec) String() string {
	switch s.kind {
	case kindTCP:
		return "tcp:" + s.addr
	case kindUnix:
		return "unix:" + s.addr
	}
	return s.addr
}

// hasResourceManager reports whether the kernel virtualises handles for
// this transport, so that GetCapability shows only our own handles and
// nothing stale can be left behind by another client.
func (s transportSpec) hasResourceManager() bool {
	return s.kind == kindDevice && strings.Contains(s.addr, "tpmrm")
}

// OpenTransport opens a raw connection to a TPM for use with go-tpm's
// tpm2 commands, without anything this package layers on top (no SRK, no
// session, no retries, no serialisation). spec is a transport string as for
// [Open]: "/dev/tpmrm0", "tcp:127.0.0.1:2321" or "unix:/path/to/socket".
// Errors opening the device or socket wrap [ErrTPMUnavailable].
//
// swtpm's data channel (--server) carries bare TPM 2.0 command and response
// buffers; this transport writes a command and reads the whole response:
// the 10-byte header, then the rest as its size field says. The MS
// simulator's TPM_SEND_COMMAND envelope and platform port are not used.
func OpenTransport(ctx context.Context, spec string) (transport.TPMCloser, error) {
	s, err := parseTransport(spec)
	if err != nil {
		return nil, err
	}
	return openRaw(ctx, s, 0)
}

// openRaw opens the transport s. On a socket, ioTimeout bounds each
// command (0: no bound); the kernel driver bounds commands to a device.
func openRaw(ctx context.Context, s transportSpec, ioTimeout time.Duration) (transport.TPMCloser, error) {
	switch s.kind {
	case kindDevice:
		f, err := os.OpenFile(s.addr, os.O_RDWR, 0)
		if err != nil {
			return nil, openError(s.String(), err)
		}
		return &deviceTransport{f: f}, nil
	default:
		network := "tcp"
		if s.kind == kindUnix {
			network = "unix"
		}
		d := net.Dialer{Timeout: dialTimeout}
		c, err := d.DialContext(ctx, network, s.addr)
		if err != nil {
			return nil, openError(s.String(), err)
		}
		return &streamTransport{c: c, timeout: ioTimeout}, nil
	}
}

// streamTransport speaks to a TPM over a byte stream (swtpm over TCP or a
// unix socket): it writes a command buffer and reads exactly one response.
type streamTransport struct {
	c       net.Conn
	timeout time.Duration
}

// Send implements transport.TPM.
func (t *streamTransport) Send(cmd []byte) ([]byte, error) {
	if t.timeout > 0 {
		if err := t.c.SetDeadline(time.Now().Add(t.timeout)); err != nil {
			return nil, &transportError{"set deadline", err}
		}
	}
	if _, err := t.c.Write(cmd); err != nil {
		return nil, &transportError{"write", err}
	}
	return readResponse(t.c)
}

// Close implements io.Closer.
func (t *streamTransport) Close() error { return t.c.Close() }

// readResponse reads one TPM response from a stream: the header, then the
// remainder announced by its size field. It never trusts a single Read.
func readResponse(r io.Reader) ([]byte, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the TPM closed the connection
		}
		return nil, &transportError{"read header", err}
	}
	return readRest(r, hdr[:])
}

func readRest(r io.Reader, hdr []byte) ([]byte, error) {
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < headerSize || size > maxResponseSize {
		return nil, &transportError{"read", fmt.Errorf("bad response size %d", size)}
	}
	resp := make([]byte, size)
	n := copy(resp, hdr)
	if _, err := io.ReadFull(r, resp[n:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, &transportError{"read body", err}
	}
	return resp, nil
}

// deviceTransport speaks to a TPM character device. The kernel wants each
// command in one write and hands back the response to the next read.
type deviceTransport struct {
	f   *os.File
	buf [4096 + headerSize]byte
}

// Send implements transport.TPM.
func (t *deviceTransport) Send(cmd []byte) ([]byte, error) {
	if _, err := t.f.Write(cmd); err != nil {
		return nil, &transportError{"write", err}
	}
	n, err := t.f.Read(t.buf[:])
	if err != nil {
		return nil, &transportError{"read", err}
	}
	if n < headerSize {
		return nil, &transportError{"read", fmt.Errorf("short response (%d bytes)", n)}
	}
	size := int(binary.BigEndian.Uint32(t.buf[2:6]))
	if size == n {
		resp := make([]byte, n)
		copy(resp, t.buf[:n])
		clear(t.buf[:n])
		return resp, nil
	}
	// A response larger than the buffer: the kernel (4.20+) serves the rest
	// to further reads.
	resp, err := readRest(io.MultiReader(bytes.NewReader(t.buf[headerSize:n]), t.f), t.buf[:headerSize])
	clear(t.buf[:n])
	return resp, err
}

// Close implements io.Closer.
func (t *deviceTransport) Close() error { return t.f.Close() }
