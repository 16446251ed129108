package perf

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// leaseSamples is how many new nodes BenchmarkLeaseToProgrammed adds.
const leaseSamples = 20

// BenchmarkLeaseToProgrammed measures the time from a new node's lease
// appearing in etcd to every node having programmed it: 3 nodes with a
// real agent each (vxlan); 20 times, one fake node's lease is written and
// the 3 node namespaces are polled every 5 ms until each has the route to
// its subnet. Metrics: p50-ms and p99-ms of the time until the last of the
// 3 nodes has it (with 20 samples p99 is the slowest), first-ms (p50 of
// the first node). The agent's watch coalesces changes for 100 ms before
// it reconciles; that is part of the figure.
func BenchmarkLeaseToProgrammed(b *testing.B) {
	for range b.N {
		benchLeaseToProgrammed(b)
	}
}

func benchLeaseToProgrammed(b *testing.B) {
	b.StopTimer()
	c := newCluster(b, "l2p", 3, peersNetConf, 5*time.Second)
	fakes, err := FakePeers(leaseSamples, c.cfg.Network, c.cfg.SubnetLen, netip.MustParseAddr("10.1.0.0"), c.realSubnets())
	if err != nil {
		b.Fatal(err)
	}
	var hs []*netlink.Handle
	for _, nd := range c.Nodes {
		h, err := nsHandle(nd.NS)
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		hs = append(hs, h)
	}
	// Each node must first have the other two (the cluster is settled).
	for i, nd := range c.Nodes {
		for _, other := range c.Nodes {
			if other.Name != nd.Name {
				waitRoute(b, hs[i], nd.Name, other.Subnet, time.Now(), 30*time.Second)
			}
		}
	}
	var last, first []time.Duration
	for i, l := range fakes {
		time.Sleep(300 * time.Millisecond) // let the previous reconciles finish
		b.StartTimer()
		start := time.Now()
		c.putLeases(b, fakes[i:i+1], 1)
		var firstDone time.Duration
		for j, nd := range c.Nodes {
			d := waitRoute(b, hs[j], nd.Name, l.Subnet, start, 30*time.Second)
			if firstDone == 0 || d < firstDone {
				firstDone = d
			}
		}
		done := time.Since(start)
		b.StopTimer()
		last, first = append(last, done), append(first, firstDone)
	}
	p50, _ := Percentile(last, 50)
	p99, _ := Percentile(last, 99)
	f50, _ := Percentile(first, 50)
	b.ReportMetric(Millis(p50), "p50-ms")
	b.ReportMetric(Millis(p99), "p99-ms")
	b.ReportMetric(Millis(f50), "first-ms")
	b.Logf("lease -> all 3 nodes programmed, %d samples: p50 %.0f ms, p99 %.0f ms; first node p50 %.0f ms", len(last), Millis(p50), Millis(p99), Millis(f50))
}

// waitRoute polls h every 5 ms until it has a route to dst, for at most d
// after start, and returns the time since start when it appeared.
func waitRoute(b *testing.B, h *netlink.Handle, node string, dst netip.Prefix, start time.Time, d time.Duration) time.Duration {
	b.Helper()
	for {
		ok, err := hasRoute(h, dst)
		if err != nil {
			b.Fatalf("%s: %v", node, err)
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			b.Fatalf("%s has no route to %s %s after the lease was written", node, dst, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
