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
