package tpm2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
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
// command (0: no bound) but the first, which probeTimeout bounds (when
// ioTimeout is set) and whose answer is checked to come from a TPM; the
// kernel driver bounds commands to a device.
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
		return &streamTransport{c: c, spec: s.String(), timeout: ioTimeout, probe: ioTimeout > 0}, nil
	}
}

// streamTransport speaks to a TPM over a byte stream (swtpm over TCP or a
// unix socket): it writes a command buffer and reads exactly one response.
type streamTransport struct {
	c       net.Conn
	spec    string
	timeout time.Duration
	// probe: the next command is the first, answered within probeTimeout
	// by a TPM.
	probe bool
}

// Send implements transport.TPM.
func (t *streamTransport) Send(cmd []byte) ([]byte, error) {
	probe := t.probe
	t.probe = false
	timeout := t.timeout
	if probe {
		timeout = probeTimeout
	}
	if timeout > 0 {
		if err := t.c.SetDeadline(time.Now().Add(timeout)); err != nil {
			return nil, &transportError{"set deadline", err}
		}
	}
	if _, err := t.c.Write(cmd); err != nil {
		return nil, &transportError{"write", err}
	}
	if !probe {
		return readResponse(t.c, false)
	}
	resp, err := readResponse(t.c, true)
	if err != nil {
		return nil, t.diagnose(err)
	}
	return resp, nil
}

// diagnose explains what went wrong with the first command on a socket:
// no answer at all (another client holds swtpm's only connection), or an
// answer that no TPM gives (swtpm's control channel answers any command
// it does not know with a 4-byte result code).
func (t *streamTransport) diagnose(err error) error {
	var re *responseError
	if errors.As(err, &re) {
		if len(re.got) == 4 {
			// What follows? Nothing, from swtpm's control channel.
			_ = t.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			var more [1]byte
			if n, _ := t.c.Read(more[:]); n == 0 {
				return fmt.Errorf("%w: %w: the server at %s answered a TPM command with the 4-byte result code 0x%08x, as swtpm's control channel (--ctrl) does, not with a TPM response: "+
					"tpm= must name swtpm's data channel (--server; with TCP ports, usually the control port minus one)",
					ErrTPMUnavailable, ErrNotTPM, t.spec, binary.BigEndian.Uint32(re.got))
			}
		}
		return fmt.Errorf("%w: %w: the server at %s does not answer like a TPM (a TPM response starts with tag 0x8001 or 0x8002; it sent %x): is tpm= the TPM's data channel?",
			ErrTPMUnavailable, ErrNotTPM, t.spec, re.got)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %w: the TPM at %s accepted the connection but does not answer (within %v): another client may hold swtpm's only connection (swtpm serves one at a time), or %s is not a TPM",
			ErrTPMUnavailable, ErrNoAnswer, t.spec, probeTimeout, t.spec)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the server at %s closed the connection without answering a TPM command: is tpm= the TPM's data channel? (%w)", ErrTPMUnavailable, t.spec, err)
	}
	return err
}

// Close implements io.Closer.
func (t *streamTransport) Close() error { return t.c.Close() }

// responseError is a response that does not start with a TPM response
// header: got holds what arrived of the header.
type responseError struct{ got []byte }

func (e *responseError) Error() string {
	return fmt.Sprintf("not a TPM response (tag %x, want 8001 or 8002)", e.got)
}

// readResponse reads one TPM response from a stream: the header, then the
// remainder announced by its size field. It never trusts a single Read.
// With probe (the first command on a connection), it reads the tag
// alone first: what is not a TPM is told by its first bytes, while it may
// never send ten. Otherwise the header is read whole, and the response
// takes two reads.
func readResponse(r io.Reader, probe bool) ([]byte, error) {
	var hdr [headerSize]byte
	head := hdr[:]
	if probe {
		head = hdr[:2]
	}
	if _, err := io.ReadFull(r, head); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the TPM closed the connection
		}
		return nil, &transportError{"read header", err}
	}
	if tag := binary.BigEndian.Uint16(hdr[:2]); tag != 0x8001 && tag != 0x8002 {
		got := hdr[:]
		if probe {
			// Up to two more bytes, if they come at once: swtpm's
			// control channel answers with four.
			n, _ := io.ReadAtLeast(r, hdr[2:4], 2)
			got = hdr[:2+n]
		}
		return nil, &transportError{"read header", &responseError{got: bytes.Clone(got)}}
	}
	if probe {
		if _, err := io.ReadFull(r, hdr[2:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, &transportError{"read header", err}
		}
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
