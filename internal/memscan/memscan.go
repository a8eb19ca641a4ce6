// Package memscan searches the memory of a running process for a secret,
// such as a private key, without ever holding the secret itself.
//
// A Pattern keeps the secret only XOR-masked with a random mask of its own
// length; candidates are compared byte by byte against the masked form, so
// the plain secret is never assembled in the scanning process: a scan can
// neither find the secret in its own patterns nor leave it behind. (Its read
// buffer does briefly hold what it reads from a process that holds the
// secret; the buffer is zeroed when the scan ends.)
//
// Mask makes patterns for both byte orders of a secret: big-endian, as key
// bytes are usually serialised, and reversed, as a little-endian big-number
// library (an array of little-endian limbs, least significant first) keeps
// a scalar.
//
// ScanProcess reads every readable mapping of a process through
// /proc/PID/maps and /proc/PID/mem (Linux). The kernel allows that only to a
// process that may ptrace the target: the same user, and with Yama's
// ptrace_scope=1 (the default on Ubuntu) only an ancestor of the target or a
// process the target named with prctl(PR_SET_PTRACER).
package memscan

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Pattern names of the two byte orders Mask produces.
const (
	BigEndian    = "big-endian"
	LittleEndian = "little-endian"
)

// A Pattern is a byte string to look for, held only XOR-masked: the string
// is Masked[i] ^ Mask[i]. The two halves together are as sensitive as the
// string itself (keep any file holding them private and short-lived), but
// neither alone reveals anything, and the scanner never combines them into
// the plain string.
type Pattern struct {
	Name   string `json:"name"`
	Mask   []byte `json:"mask"`
	Masked []byte `json:"masked"`
}

// Mask returns patterns for secret in both byte orders, named BigEndian and
// LittleEndian, each masked with its own random mask. The caller should clear
// secret afterwards. An empty secret yields no patterns.
func Mask(secret []byte) []Pattern {
	if len(secret) == 0 {
		return nil
	}
	le := slices.Clone(secret)
	slices.Reverse(le)
	defer clear(le)
	return []Pattern{mask(BigEndian, secret), mask(LittleEndian, le)}
}

func mask(name string, b []byte) Pattern {
	m := make([]byte, len(b))
	rand.Read(m)
	x := make([]byte, len(b))
	for i := range b {
		x[i] = b[i] ^ m[i]
	}
	return Pattern{Name: name, Mask: m, Masked: x}
}

// valid reports whether p can be searched for.
func (p *Pattern) valid() bool {
	return len(p.Masked) > 0 && len(p.Mask) == len(p.Masked)
}

// matchAt reports whether window starts with the pattern, comparing masked
// bytes only.
func (p *Pattern) matchAt(window []byte) bool {
	for j := range p.Masked {
		if window[j]^p.Mask[j] != p.Masked[j] {
			return false
		}
	}
	return true
}

// Result is what a scan found.
type Result struct {
	// Hits counts the occurrences of each pattern, by name.
	Hits map[string]int
	// Regions is the number of memory regions scanned.
	Regions int
	// Bytes is the number of bytes read.
	Bytes int64
}

// Total returns the number of occurrences of all patterns.
func (r Result) Total() int {
	n := 0
	for _, v := range r.Hits {
		n += v
	}
	return n
}

// A Region is the address range [Start, End) of a mapping.
type Region struct {
	Start, End uint64
}

// Regions returns the readable mappings of process pid from /proc/PID/maps,
// leaving out the kernel's [vvar] and [vsyscall] pages, which cannot be read
// through /proc/PID/mem.
func Regions(pid int) ([]Region, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("memscan: %w", err)
	}
	defer f.Close()
	return parseMaps(f)
}

// parseMaps parses the format of /proc/PID/maps.
func parseMaps(r io.Reader) ([]Region, error) {
	var regions []Region
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1] == "" || f[1][0] != 'r' {
			continue
		}
		if len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vvar_vclock]" || f[5] == "[vsyscall]") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		regions = append(regions, Region{start, end})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("memscan: reading maps: %w", err)
	}
	return regions, nil
}

// ScanProcess reads every readable region of process pid's memory and
// counts the occurrences of the patterns. It fails when the process cannot
// be read (it is gone, or this process may not ptrace it: see the package
// documentation). Scanning the calling process itself works but also reads
// the scanner's own buffer; scan from another process.
func ScanProcess(pid int, pats []Pattern) (Result, error) {
	regions, err := Regions(pid)
	if err != nil {
		return Result{}, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return Result{}, fmt.Errorf("memscan: %w", err)
	}
	defer mem.Close()
	return ScanRegions(mem, regions, pats), nil
}

// bufSize is how much ScanRegions reads at a time.
const bufSize = 1 << 20

// ScanRegions reads the regions of mem (an address space, such as an open
// /proc/PID/mem) 1 MiB at a time, keeping an overlap between reads so that
// occurrences across reads are found, and counts the occurrences of the
// patterns. A region that stops being readable (a guard page, a mapping
// removed meanwhile) is scanned up to that point. Its read buffer is zeroed
// before it returns.
func ScanRegions(mem io.ReaderAt, regions []Region, pats []Pattern) Result {
	res := Result{Hits: make(map[string]int)}
	maxLen := 0
	var use []*Pattern
	for i := range pats {
		if pats[i].valid() {
			use = append(use, &pats[i])
			maxLen = max(maxLen, len(pats[i].Masked))
		}
	}
	keep := max(maxLen-1, 0) // bytes kept between reads: a pattern less one
	buf := make([]byte, bufSize+keep)
	defer clear(buf)
	for _, r := range regions {
		res.Regions++
		carry := 0 // bytes kept from the previous read
		for off := r.Start; off < r.End; {
			n := min(uint64(bufSize), r.End-off)
			m, _ := mem.ReadAt(buf[carry:carry+int(n)], int64(off))
			if m <= 0 {
				break
			}
			res.Bytes += int64(m)
			window := buf[:carry+m]
			for _, p := range use {
				// Occurrences that lie wholly in the carried bytes were
				// counted by the previous read.
				if c := count(p, window, max(carry-len(p.Masked)+1, 0)); c > 0 {
					res.Hits[p.Name] += c
				}
			}
			off += uint64(m)
			carry = min(keep, len(window))
			copy(buf, window[len(window)-carry:])
		}
	}
	return res
}

// count counts where p occurs in window at offsets from on. Candidates are
// found by their first byte, unmasked alone; the rest is compared masked.
func count(p *Pattern, window []byte, from int) int {
	first := p.Masked[0] ^ p.Mask[0]
	n := len(p.Masked)
	hits := 0
	for i := from; i+n <= len(window); {
		j := bytes.IndexByte(window[i:len(window)-n+1], first)
		if j < 0 {
			break
		}
		i += j
		if p.matchAt(window[i : i+n]) {
			hits++
		}
		i++
	}
	return hits
}
