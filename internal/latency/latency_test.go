package latency

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[len(ds)-1-i] = time.Duration(i+1) * time.Millisecond // reversed: Percentile sorts
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile(ds[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one sample = %v", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of none = %v", got)
	}
}

type metrics map[string]float64

func (m metrics) ReportMetric(n float64, unit string) { m[unit] = n }

func TestReport(t *testing.T) {
	ds := []time.Duration{3 * time.Millisecond, 1 * time.Millisecond, 2 * time.Millisecond}
	m := metrics{}
	if p50 := Report(m, "x-", ds, time.Microsecond); p50 != 2000 {
		t.Errorf("p50 = %v µs, want 2000", p50)
	}
	if m["x-p50-µs"] != 2000 || m["x-p99-µs"] != 3000 || len(m) != 2 {
		t.Errorf("metrics %v", m)
	}
	m = metrics{}
	Report(m, "", ds, time.Millisecond)
	if m["p50-ms"] != 2 || m["p99-ms"] != 3 {
		t.Errorf("metrics %v", m)
	}
}
