package perf

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of samples by the
// nearest-rank method: the smallest sample such that at least p percent of
// the samples are less than or equal to it. With 20 samples, p99 is the
// largest one. An empty sample set or p out of range is an error.
func Percentile(samples []time.Duration, p float64) (time.Duration, error) {
	if len(samples) == 0 {
		return 0, fmt.Errorf("percentile p%g of no samples", p)
	}
	if !(p > 0 && p <= 100) {
		return 0, fmt.Errorf("percentile p%g: want 0 < p <= 100", p)
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1], nil
}

// Millis converts d to fractional milliseconds, the unit the benchmarks
// report latencies in.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BitRate is bytes moved in d, in bits per second. A non-positive duration
// is an error (nothing was measured).
func BitRate(bytes int64, d time.Duration) (float64, error) {
	if d <= 0 {
		return 0, fmt.Errorf("bit rate of %d bytes in %s: no time measured", bytes, d)
	}
	return float64(bytes) * 8 / d.Seconds(), nil
}

// Median of xs (the mean of the middle two for an even count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MedianRatio is the median of num[i]/den[i]: each measured run is divided
// by the baseline run just before it, which saw about the same machine
// load. The slices must have the same, non-zero length and no baseline may
// be zero or negative.
func MedianRatio(num, den []float64) (float64, error) {
	if len(num) != len(den) || len(num) == 0 {
		return 0, fmt.Errorf("median ratio of %d runs over %d baselines: want the same, non-zero count", len(num), len(den))
	}
	r := make([]float64, len(num))
	for i := range num {
		if den[i] <= 0 {
			return 0, fmt.Errorf("median ratio: baseline run %d measured %g", i, den[i])
		}
		r[i] = num[i] / den[i]
	}
	return Median(r), nil
}
