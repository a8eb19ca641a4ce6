package tpm2

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/testenv"
)

// ctrlTransport returns the transport string of swtpm's control channel
// (testenv puts it on the data port plus one, or beside the data socket
// with ".ctrl" added).
func ctrlTransport(t testing.TB, sw *testenv.SWTPM) string {
	t.Helper()
	tr := sw.Transport()
	if p, ok := strings.CutPrefix(tr, "unix:"); ok {
		return "unix:" + p + ".ctrl"
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(tr, "tcp:"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return "tcp:" + net.JoinHostPort(host, strconv.Itoa(n+1))
}

// TestControlPortIsNoTPM (issue 11, bug 4): tpm= naming swtpm's control
// channel fails within seconds (not after a 60 s read timeout) and says
// that it looks like swtpm's control channel.
func TestControlPortIsNoTPM(t *testing.T) {
	for name, opts := range map[string][]testenv.SWTPMOption{"tcp": nil, "unix": {testenv.SWTPMUnixSocket()}} {
		t.Run(name, func(t *testing.T) {
			sw := testenv.StartSWTPM(t, opts...)
			ctrl := ctrlTransport(t, sw)
			start := time.Now()
			_, err := Open(testCtx(t), ctrl)
			d := time.Since(start)
			if !errors.Is(err, ErrNotTPM) || !errors.Is(err, ErrTPMUnavailable) {
				t.Fatalf("Open(%s) = %v, want ErrNotTPM and ErrTPMUnavailable", ctrl, err)
			}
			if !strings.Contains(err.Error(), "swtpm's control channel") || !strings.Contains(err.Error(), "data channel") {
				t.Errorf("the error does not say what it looks like: %v", err)
			}
			if d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			t.Logf("%v: %v", d.Round(time.Millisecond), err)
			// The right port works.
			tp := openTPM(t, sw)
			tp.Close()
		})
	}
}

// TestBusyTPM (issue 11, bug 4): while another client holds swtpm's only
// connection, Open fails within seconds and says so; once it lets go,
// Open works.
func TestBusyTPM(t *testing.T) {
	sw := testenv.StartSWTPM(t)
	holder, err := net.Dial("tcp", strings.TrimPrefix(sw.Transport(), "tcp:"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	// A command and its answer: swtpm now serves this connection.
	if _, err := holder.Write([]byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(holder, make([]byte, 20)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Open(testCtx(t), sw.Transport())
	d := time.Since(start)
	if !errors.Is(err, ErrNoAnswer) || !errors.Is(err, ErrTPMUnavailable) {
		t.Fatalf("Open(busy) = %v, want ErrNoAnswer and ErrTPMUnavailable", err)
	}
	if !strings.Contains(err.Error(), "accepted the connection but does not answer") ||
		!strings.Contains(err.Error(), "another client may hold swtpm's only connection") {
		t.Errorf("the error does not say why: %v", err)
	}
	if d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	t.Logf("%v: %v", d.Round(time.Millisecond), err)
	holder.Close()
	tp := openTPM(t, sw)
	checkECDH(t, testCtx(t), createKey(t, tp, allCurves[0]))
}
