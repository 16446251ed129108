package perf

import (
	"encoding/json"
	"fmt"
)

// iperfResult is the part of `iperf3 -J` output the benchmarks read.
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumReceived *struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// ParseIperfJSON returns the throughput the receiver measured
// (end.sum_received.bits_per_second) from the JSON an iperf3 client prints
// with -J. An iperf3 error report, a missing sum or a zero rate is an error.
func ParseIperfJSON(data []byte) (bitsPerSecond float64, err error) {
	var r iperfResult
	if err := json.Unmarshal(data, &r); err != nil {
		return 0, fmt.Errorf("iperf3 -J output: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived == nil {
		return 0, fmt.Errorf("iperf3 -J output has no end.sum_received (did the test run?)")
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3: receiver measured %g bit/s", r.End.SumReceived.BitsPerSecond)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}
