package cni

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkCNIAddDel measures CNI ADD and DEL latency over 100 pods on one
// node, executing the plugin the way a container runtime does (CNI_*
// variables, config on stdin, one process per call), sequentially. It
// reports p50/p99 in milliseconds, plus the cost of starting the plugin
// process at all (CNI VERSION) as a baseline. The sub-benchmarks compare
// an IPv4 node with a dual-stack one (two addresses, four routes) in the
// same run. Run with -benchtime=1x.
func BenchmarkCNIAddDel(b *testing.B) {
	b.Run("ipv4", func(b *testing.B) {
		benchAddDel(b, newNode(b, "10.244.6.1/24", 1450))
	})
	b.Run("dual", func(b *testing.B) {
		n := newNode(b, "", 0)
		n.writeSubnetInfo(dualStackInfo(6, 1450))
		benchAddDel(b, n)
	})
}

func benchAddDel(b *testing.B, n *testNode) {
	const pods = 100
	names := make([]string, pods)
	for i := range names {
		names[i] = n.newPod(i)
	}
	conf := n.pluginConf("")
	var adds, dels, execs []time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for _, p := range names {
			_, took, err := n.plugin("VERSION", "", "", conf)
			if err != nil {
				b.Fatal(err)
			}
			execs = append(execs, took)
			_, took, err = n.plugin("ADD", containerIDOf(p), p, conf)
			if err != nil {
				b.Fatal(err)
			}
			adds = append(adds, took)
		}
		for _, p := range names {
			_, took, err := n.plugin("DEL", containerIDOf(p), p, conf)
			if err != nil {
				b.Fatal(err)
			}
			dels = append(dels, took)
		}
	}
	b.StopTimer()
	b.ReportMetric(percentileMS(adds, 50), "add-p50-ms")
	b.ReportMetric(percentileMS(adds, 99), "add-p99-ms")
	b.ReportMetric(percentileMS(dels, 50), "del-p50-ms")
	b.ReportMetric(percentileMS(dels, 99), "del-p99-ms")
	b.ReportMetric(percentileMS(execs, 50), "exec-p50-ms")
}

// percentileMS is the p-th percentile (nearest rank) of d in milliseconds.
func percentileMS(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := (p*len(s) + 99) / 100
	if k < 1 {
		k = 1
	}
	return float64(s[k-1].Microseconds()) / 1000
}
