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

var line = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

func main() {
	metrics := map[string]map[string][]float64{} // benchmark -> unit -> values
	var order []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := m[1]
		if metrics[name] == nil {
			metrics[name] = map[string][]float64{}
			order = append(order, name)
		}
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			metrics[name][f[i+1]] = append(metrics[name][f[i+1]], v)
		}
	}
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
