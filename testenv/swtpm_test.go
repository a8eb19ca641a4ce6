package testenv

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// getRandom sends TPM2_GetRandom over a transport string from SWTPM and
// returns the response code.
func getRandom(t *testing.T, transport string) uint32 {
	t.Helper()
	network, addr := "tcp", strings.TrimPrefix(transport, "tcp:")
	if strings.HasPrefix(transport, "unix:") {
		network, addr = "unix", strings.TrimPrefix(transport, "unix:")
	}
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16}); err != nil {
		t.Fatal(err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, binary.BigEndian.Uint32(hdr[2:6])-10)
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(hdr[6:])
}

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func TestSWTPMLifecycle(t *testing.T) {
	for _, unix := range []bool{false, true} {
		name := "tcp"
		var opts []SWTPMOption
		if unix {
			name = "unix"
			opts = append(opts, SWTPMUnixSocket())
		}
		t.Run(name, func(t *testing.T) {
			var pid int
			var dir string
			t.Run("run", func(t *testing.T) {
				s := StartSWTPM(t, opts...)
				prefix := "tcp:127.0.0.1:"
				if unix {
					prefix = "unix:/"
				}
				if !strings.HasPrefix(s.Transport(), prefix) {
					t.Fatalf("Transport() = %q, want prefix %q", s.Transport(), prefix)
				}
				if rc := getRandom(t, s.Transport()); rc != 0 {
					t.Fatalf("GetRandom rc = 0x%x", rc)
				}
				if _, err := os.Stat(s.StateDir()); err != nil {
					t.Fatal(err)
				}

				s.Restart()
				if rc := getRandom(t, s.Transport()); rc != 0 {
					t.Fatalf("after Restart: GetRandom rc = 0x%x", rc)
				}

				old := s.Pid()
				s.Kill9()
				if s.Running() || alive(old) {
					t.Fatal("swtpm still running after Kill9")
				}
				s.Start()
				if rc := getRandom(t, s.Transport()); rc != 0 {
					t.Fatalf("after Kill9+Start: GetRandom rc = 0x%x", rc)
				}

				// TPM_Init: the TPM wants TPM2_Startup again.
				s.Init()
				if rc := getRandom(t, s.Transport()); rc != 0x100 { // TPM_RC_INITIALIZE
					t.Fatalf("after Init: GetRandom rc = 0x%x, want TPM_RC_INITIALIZE", rc)
				}
				pid, dir = s.Pid(), s.dir
				if !alive(pid) {
					t.Fatal("swtpm not running")
				}
			})
			// The subtest's cleanup stopped swtpm and removed its directory.
			deadline := time.Now().Add(5 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if alive(pid) {
				t.Errorf("swtpm %d outlived its test", pid)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("temporary directory %s not removed: %v", dir, err)
			}
		})
	}
}

func TestSWTPMTwoInstances(t *testing.T) {
	a := StartSWTPM(t)
	b := StartSWTPM(t)
	if a.Transport() == b.Transport() {
		t.Fatalf("two instances share %s", a.Transport())
	}
	if getRandom(t, a.Transport()) != 0 || getRandom(t, b.Transport()) != 0 {
		t.Fatal("GetRandom failed")
	}
}
