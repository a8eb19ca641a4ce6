package plugins_test

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// maskedPattern is a byte string to look for, kept only XOR-masked with a
// random mask: the scanner never holds the plain pattern, so it cannot
// find (or leave) it in memory by itself.
type maskedPattern struct {
	name   string
	mask   []byte
	masked []byte
}

// maskPatterns returns secret big-endian and byte-reversed (little-endian),
// each masked with its own random mask. The caller should clear secret.
func maskPatterns(secret []byte) []maskedPattern {
	mk := func(name string, b []byte) maskedPattern {
		m := make([]byte, len(b))
		rand.Read(m)
		x := make([]byte, len(b))
		for i := range b {
			x[i] = b[i] ^ m[i]
		}
		return maskedPattern{name: name, mask: m, masked: x}
	}
	le := slices.Clone(secret)
	slices.Reverse(le)
	defer clear(le)
	return []maskedPattern{mk("big-endian", secret), mk("little-endian", le)}
}

// matchAt reports whether window, unmasked, is the pattern, comparing
// masked bytes only.
func (p *maskedPattern) matchAt(window []byte) bool {
	for j := range p.masked {
		if window[j]^p.mask[j] != p.masked[j] {
			return false
		}
	}
	return true
}

// scanResult is what a memory scan found.
type scanResult struct {
	hits    map[string]int // pattern name → occurrences
	regions int
	bytes   int64
}

func (r scanResult) total() int {
	n := 0
	for _, v := range r.hits {
		n += v
	}
	return n
}

// scanProcess reads every readable region of a process's memory
// (/proc/PID/maps, /proc/PID/mem) and counts the occurrences of the
// patterns.
func scanProcess(pid int, pats []maskedPattern) (scanResult, error) {
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return scanResult{}, err
	}
	defer maps.Close()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return scanResult{}, err
	}
	defer mem.Close()
	var regions [][2]uint64
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1][0] != 'r' {
			continue
		}
		if len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vvar_vclock]" || f[5] == "[vsyscall]") {
			continue // not readable through /proc/PID/mem
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		regions = append(regions, [2]uint64{start, end})
	}
	if err := sc.Err(); err != nil {
		return scanResult{}, err
	}
	return scanRegions(mem, regions, pats), nil
}

// scanRegions reads the regions [start, end) of mem 1 MiB at a time,
// keeping an overlap between reads so that matches across reads are found,
// and counts the occurrences of the patterns.
func scanRegions(mem io.ReaderAt, regions [][2]uint64, pats []maskedPattern) scanResult {
	res := scanResult{hits: make(map[string]int)}
	maxLen := 0
	for _, p := range pats {
		maxLen = max(maxLen, len(p.masked))
	}
	buf := make([]byte, 1<<20)
	for _, r := range regions {
		start, end := r[0], r[1]
		res.regions++
		carry := 0 // bytes kept from the previous chunk
		for off := start; off < end; {
			n := min(uint64(len(buf)-carry), end-off)
			m, _ := mem.ReadAt(buf[carry:carry+int(n)], int64(off))
			if m <= 0 {
				break // e.g. a guard page that cannot be read
			}
			res.bytes += int64(m)
			window := buf[:carry+m]
			for i := range pats {
				countMatches(&pats[i], window, res.hits)
			}
			off += uint64(m)
			carry = min(maxLen-1, len(window))
			copy(buf, window[len(window)-carry:])
		}
	}
	clear(buf)
	return res
}

// countMatches counts where p occurs in window. Candidates are found by
// the first byte, unmasked alone; the rest is compared masked.
func countMatches(p *maskedPattern, window []byte, hits map[string]int) {
	first := p.masked[0] ^ p.mask[0]
	n := len(p.masked)
	for i := 0; i+n <= len(window); {
		j := bytes.IndexByte(window[i:len(window)-n+1], first)
		if j < 0 {
			return
		}
		i += j
		if p.matchAt(window[i : i+n]) {
			hits[p.name]++
		}
		i++
	}
}

// TestScannerFindsPattern checks the scanner on planted copies of a secret
// in both byte orders, across its 1 MiB read boundaries, in two regions of a
// synthetic address space. (Scanning real processes, and finding the key in
// one that holds it, is the positive control of
// TestKeyStaysOutOfServerMemory; scanning this test process itself would
// read the race detector's shadow memory, gigabytes of it.)
func TestScannerFindsPattern(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	pats := maskPatterns(secret)
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
	res := scanRegions(bytes.NewReader(hay), [][2]uint64{{0, 3 << 20}, {4 << 20, 5 << 20}}, pats)
	if res.hits["big-endian"] != 2 || res.hits["little-endian"] != 2 {
		t.Fatalf("scanner found %v; want 2 in each byte order", res.hits)
	}
	if res.regions != 2 || res.bytes != 4<<20 {
		t.Fatalf("scanned %d regions, %d bytes", res.regions, res.bytes)
	}
	clear(hay)
}

// TestKeyStaysOutOfServerMemory imports a key with known bytes into each
// backend, runs requests through the plugin in a separate server process,
// and scans that process's whole memory for the private key in either
// byte order: nothing may be found. The positive control scans the soft
// backend's plugin process, which holds the key, and must find it.
func TestKeyStaysOutOfServerMemory(t *testing.T) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	scalar := priv.Bytes()
	pats := maskPatterns(scalar)
	clear(scalar)
	for _, backend := range []string{"pkcs11", "tpm2", "soft"} {
		t.Run(backend, func(t *testing.T) {
			bk := provision(t, backend, priv)
			h := startHelperServer(t, helperConfig{Refs: bk.refs, Env: bk.env, Rounds: 120})
			res, err := scanProcess(h.pid(), pats)
			if err != nil {
				t.Fatalf("scan server: %v", err)
			}
			t.Logf("server pid %d: scanned %d regions, %d MiB: %v", h.pid(), res.regions, res.bytes>>20, res.hits)
			if res.bytes < 1<<20 {
				t.Fatalf("scanned only %d bytes of the server", res.bytes)
			}
			if res.total() != 0 {
				t.Fatalf("the server process holds the private key: %v", res.hits)
			}
			pres, err := scanProcess(h.plugins[0], pats)
			if err != nil {
				t.Fatalf("scan plugin: %v", err)
			}
			t.Logf("plugin pid %d (%s): scanned %d regions, %d MiB: %v", h.plugins[0], backend, pres.regions, pres.bytes>>20, pres.hits)
			if backend == "soft" && pres.total() == 0 {
				t.Fatal("positive control failed: the soft plugin holds the key, but the scan did not find it")
			}
			h.stop()
		})
	}
}
