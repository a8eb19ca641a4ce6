// Command benchtable summarises `go test -bench` output: for every
// benchmark it prints the median of each metric over the runs (-count N),
// and for benchmarks whose last name element is impl=X it prints each
// implementation's median throughput or time as a ratio to the others of
// the same group, as measured side by side in the same run.
//
//	go test ./twoway -run '^$' -bench Chunked -count 10 | go run ./scripts/benchtable
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var line = regexp.MustCompile(`^(Benchmark\S+)\s+(\d+)\s+(.*)$`)

// procSuffix matches the "-N" go test appends to every benchmark name when
// GOMAXPROCS is N > 1.
var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads go test -bench output and returns the benchmark names in
// order of appearance and their metrics (name -> unit -> values). The
// GOMAXPROCS suffix is dropped only when every line carries the same one,
// so that names that end in digits of their own (P-256) stay apart when
// there is none (GOMAXPROCS=1).
func parse(lines []string) ([]string, map[string]map[string][]float64) {
	type row struct{ name, rest string }
	var rows []row
	suffix, same := "", true
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		rows = append(rows, row{m[1], m[3]})
		sfx := procSuffix.FindString(m[1])
		if len(rows) == 1 {
			suffix = sfx
		} else if sfx != suffix {
			same = false
		}
	}
	metrics := map[string]map[string][]float64{}
	var order []string
	for _, r := range rows {
		name := r.name
		if same && suffix != "" {
			name = strings.TrimSuffix(name, suffix)
		}
		if metrics[name] == nil {
			metrics[name] = map[string][]float64{}
			order = append(order, name)
		}
		f := strings.Fields(r.rest)
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			metrics[name][f[i+1]] = append(metrics[name][f[i+1]], v)
		}
	}
	return order, metrics
}

func main() {
	var lines []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	order, metrics := parse(lines)
	if len(order) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines on stdin")
		os.Exit(1)
	}
	fmt.Println("| benchmark | runs | median |")
	fmt.Println("| --- | --- | --- |")
	for _, name := range order {
		var parts []string
		units := make([]string, 0, len(metrics[name]))
		for u := range metrics[name] {
			units = append(units, u)
		}
		sort.Strings(units)
		runs := 0
		for _, u := range units {
			vs := metrics[name][u]
			runs = len(vs)
			parts = append(parts, fmt.Sprintf("%s %s", format(median(vs)), u))
		}
		fmt.Printf("| %s | %d | %s |\n", name, runs, strings.Join(parts, ", "))
	}
	ratios(order, metrics)
}

// baselines are the implementations the others are compared with: the
// streaming limit and the bare cryptographic work (twoway's benchmarks), and
// the reference package.
var baselines = []string{"limit", "reference", "bare"}

// ratios compares the implementations of each group (benchmarks that differ
// only in their final impl=X element) with the group's baselines.
func ratios(order []string, metrics map[string]map[string][]float64) {
	groups := map[string][]string{}
	var gorder []string
	for _, name := range order {
		i := strings.LastIndex(name, "/impl=")
		if i < 0 {
			continue
		}
		g := name[:i]
		if groups[g] == nil {
			gorder = append(gorder, g)
		}
		groups[g] = append(groups[g], name)
	}
	if len(gorder) == 0 {
		return
	}
	fmt.Println()
	fmt.Println("| group | ratios of medians (throughput, or inverse time) |")
	fmt.Println("| --- | --- |")
	for _, g := range gorder {
		speed := map[string]float64{}
		var impls []string
		for _, name := range groups[g] {
			impl := name[strings.LastIndex(name, "=")+1:]
			impls = append(impls, impl)
			if vs := metrics[name]["MB/s"]; len(vs) > 0 {
				speed[impl] = median(vs)
			} else if vs := metrics[name]["ns/op"]; len(vs) > 0 {
				speed[impl] = 1 / median(vs)
			}
		}
		var parts []string
		for _, a := range impls {
			for _, b := range impls {
				if a == b || !slices.Contains(baselines, b) {
					continue
				}
				parts = append(parts, fmt.Sprintf("%s/%s = %.2f", a, b, speed[a]/speed[b]))
			}
		}
		fmt.Printf("| %s | %s |\n", g, strings.Join(parts, ", "))
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
