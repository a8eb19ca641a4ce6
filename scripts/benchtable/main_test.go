package main

import (
	"slices"
	"testing"
)

func TestParseSuffixes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  []string
	}{
		{"two CPUs", []string{
			"BenchmarkECDH/P-256-2 \t 10 \t 5 ns/op",
			"BenchmarkECDH/P-384-2 \t 10 \t 6 ns/op",
			"BenchmarkECDH/P-256-2 \t 10 \t 7 ns/op",
		}, []string{"BenchmarkECDH/P-256", "BenchmarkECDH/P-384"}},
		{"one CPU: no suffix, names ending in digits stay apart", []string{
			"BenchmarkECDH/P-256 \t 10 \t 5 ns/op",
			"BenchmarkECDH/P-384 \t 10 \t 6 ns/op",
			"BenchmarkECDH/P-521 \t 10 \t 6 ns/op",
		}, []string{"BenchmarkECDH/P-256", "BenchmarkECDH/P-384", "BenchmarkECDH/P-521"}},
	} {
		order, metrics := parse(tc.lines)
		if !slices.Equal(order, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, order, tc.want)
		}
		if tc.name == "two CPUs" && len(metrics["BenchmarkECDH/P-256"]["ns/op"]) != 2 {
			t.Errorf("%s: runs of one benchmark were not merged: %v", tc.name, metrics)
		}
	}
}
