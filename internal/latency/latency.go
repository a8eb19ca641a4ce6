// Package latency summarises latency samples: the percentiles that the
// twoway-hsm selftest and demo print and that the benchmarks report.
package latency

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of ds,
// or 0 when ds is empty. It sorts ds in place.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// Reporter receives metrics; *testing.B is one.
type Reporter interface {
	ReportMetric(n float64, unit string)
}

// Report reports the p50 and p99 of ds to r as prefix+"p50-"+unit and
// prefix+"p99-"+unit, in multiples of unit (µs or ms), and returns the p50
// in that unit. It sorts ds in place.
func Report(r Reporter, prefix string, ds []time.Duration, unit time.Duration) (p50 float64) {
	name := "µs"
	if unit == time.Millisecond {
		name = "ms"
	} else {
		unit = time.Microsecond
	}
	p50 = float64(Percentile(ds, 50)) / float64(unit)
	r.ReportMetric(p50, prefix+"p50-"+name)
	r.ReportMetric(float64(Percentile(ds, 99))/float64(unit), prefix+"p99-"+name)
	return p50
}
