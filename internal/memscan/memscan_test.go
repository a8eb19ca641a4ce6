package memscan

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestScannerFindsPattern plants copies of a secret in both byte orders
// in a synthetic address space of two regions, inside a read and across the
// scanner's 1 MiB read boundaries, and checks that each is found once.
func TestScannerFindsPattern(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	pats := Mask(secret)
	hay := make([]byte, 5<<20)
	rand.Read(hay)
	copy(hay[12345:], secret)    // inside the first read
	copy(hay[1<<20-10:], secret) // across the first boundary
	le := slices.Clone(secret)
	slices.Reverse(le)
	copy(hay[2<<20-7:], le)   // across the second boundary
	copy(hay[4<<20+100:], le) // in the second region
	clear(secret)
	clear(le)
	res := ScanRegions(bytes.NewReader(hay), []Region{{0, 3 << 20}, {4 << 20, 5 << 20}}, pats)
	if res.Hits[BigEndian] != 2 || res.Hits[LittleEndian] != 2 || res.Total() != 4 {
		t.Fatalf("scanner found %v; want 2 in each byte order", res.Hits)
	}
	if res.Regions != 2 || res.Bytes != 4<<20 {
		t.Fatalf("scanned %d regions, %d bytes; want 2 regions, 4 MiB", res.Regions, res.Bytes)
	}
	// A copy in the gap between the regions is not scanned.
	copy(hay[3<<20+5:], hay[12345:12345+32])
	if res := ScanRegions(bytes.NewReader(hay), []Region{{0, 3 << 20}, {4 << 20, 5 << 20}}, pats); res.Total() != 4 {
		t.Fatalf("found %v after planting outside the regions", res.Hits)
	}
	clear(hay)
}

// TestPatternsNeverPlain checks that a pattern holds neither byte order of
// the secret in plain form.
func TestPatternsNeverPlain(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	rev := slices.Clone(secret)
	slices.Reverse(rev)
	pats := Mask(secret)
	if len(pats) != 2 || pats[0].Name != BigEndian || pats[1].Name != LittleEndian {
		t.Fatalf("Mask returned %+v", pats)
	}
	for _, p := range pats {
		for _, b := range [][]byte{p.Mask, p.Masked} {
			if bytes.Equal(b, secret) || bytes.Equal(b, rev) {
				t.Fatalf("pattern %s holds the secret in plain form", p.Name)
			}
		}
	}
	if Mask(nil) != nil {
		t.Fatal("Mask(nil) returned patterns")
	}
}

// TestNoDoubleCount checks that a short pattern lying in the overlap kept
// between two reads is counted once, and that malformed patterns are
// ignored, also when they are all there is.
func TestNoDoubleCount(t *testing.T) {
	long := make([]byte, 64)
	short := make([]byte, 8)
	rand.Read(long)
	rand.Read(short)
	pats := []Pattern{mask("long", long), mask("short", short), {Name: "bad", Mask: []byte{1}, Masked: []byte{1, 2}}, {Name: "empty"}}
	hay := make([]byte, 3<<20)
	rand.Read(hay)
	copy(hay[1<<20-20:], short) // in the last 63 bytes of the first read
	copy(hay[2<<20-64:], long)  // ends exactly at the second boundary
	res := ScanRegions(bytes.NewReader(hay), []Region{{0, 3 << 20}}, pats)
	if res.Hits["short"] != 1 || res.Hits["long"] != 1 || len(res.Hits) != 2 {
		t.Fatalf("found %v; want short and long once each", res.Hits)
	}
	// With nothing valid to look for, the regions are still read.
	res = ScanRegions(bytes.NewReader(hay), []Region{{0, 3 << 20}}, pats[2:])
	if res.Total() != 0 || res.Bytes != 3<<20 {
		t.Fatalf("without valid patterns: found %v in %d bytes", res.Hits, res.Bytes)
	}
}

// shortReader fails reads beyond limit, as an unreadable guard page does.
type shortReader struct {
	r     *bytes.Reader
	limit int64
}

func (s shortReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.limit {
		return 0, bytes.ErrTooLarge
	}
	if off+int64(len(p)) > s.limit {
		p = p[:s.limit-off]
	}
	return s.r.ReadAt(p, off)
}

func TestUnreadableTail(t *testing.T) {
	secret := make([]byte, 16)
	rand.Read(secret)
	hay := make([]byte, 2<<20)
	copy(hay[100:], secret)
	copy(hay[1<<20+100:], secret) // beyond what can be read
	res := ScanRegions(shortReader{bytes.NewReader(hay), 1<<20 + 50}, []Region{{0, 2 << 20}}, Mask(secret))
	if res.Hits[BigEndian] != 1 || res.Bytes != 1<<20+50 {
		t.Fatalf("found %v in %d bytes", res.Hits, res.Bytes)
	}
}

func TestParseMaps(t *testing.T) {
	maps := `55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 123 /usr/bin/dash
55d0c0a21000-55d0c0a36000 r-xp 00021000 08:01 123 /usr/bin/dash
55d0c1e3c000-55d0c1e5d000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 ---p 00000000 00:00 0
7ffd5b7f4000-7ffd5b7f8000 r--p 00000000 00:00 0 [vvar]
7ffd5b7f8000-7ffd5b7fa000 r-xp 00000000 00:00 0 [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
garbage
`
	got, err := parseMaps(strings.NewReader(maps))
	if err != nil {
		t.Fatal(err)
	}
	want := []Region{{0x55d0c0a00000, 0x55d0c0a21000}, {0x55d0c0a21000, 0x55d0c0a36000}, {0x55d0c1e3c000, 0x55d0c1e5d000}, {0x7ffd5b7f8000, 0x7ffd5b7fa000}}
	if !slices.Equal(got, want) {
		t.Fatalf("parseMaps = %x; want %x", got, want)
	}
}

// TestScanProcess scans two real processes, shells blocked reading their
// stdin: one holds the secret (as its argv[0], on its stack), the other
// does not. (The test process itself is not scanned: under the race
// detector it maps gigabytes of shadow memory.)
func TestScanProcess(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	secret := []byte(hex.EncodeToString(raw))
	pats := Mask(secret)
	holder := startShell(t, sh, string(secret))
	other := startShell(t, sh, "twoway-memscan-test")

	res, err := ScanProcess(holder, pats)
	if err != nil {
		t.Fatalf("ScanProcess: %v", err)
	}
	t.Logf("holder: %d regions, %d KiB, hits %v", res.Regions, res.Bytes>>10, res.Hits)
	if res.Hits[BigEndian] == 0 || res.Bytes == 0 {
		t.Fatalf("the secret in the shell's argv was not found: %v", res.Hits)
	}
	res, err = ScanProcess(other, pats)
	if err != nil {
		t.Fatalf("ScanProcess: %v", err)
	}
	if res.Total() != 0 || res.Bytes == 0 {
		t.Fatalf("found %v in a process without the secret (%d bytes read)", res.Hits, res.Bytes)
	}
	if _, err := ScanProcess(1<<30, pats); err == nil {
		t.Fatal("scanning a process that does not exist did not fail")
	}
}

// startShell starts `sh -c 'read x' arg0`, which waits on its stdin until
// the test ends, and returns its pid.
func startShell(t *testing.T, sh, arg0 string) int {
	t.Helper()
	cmd := exec.Command(sh, "-c", "read x", arg0)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	return cmd.Process.Pid
}
